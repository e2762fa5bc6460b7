// Screens fetch again when the broker says something they show has changed.

import { onChanged, type ChangedWhat } from "./api";

/**
 * Calls `refetch` each time the broker reports a change of one of `whats`. Returns the function
 * that stops listening, for `onMount` or `$effect` to call.
 */
export function follow(whats: readonly ChangedWhat[], refetch: () => void): () => void {
  let unlisten: (() => void) | null = null;
  let gone = false;
  onChanged((what) => {
    if (!gone && whats.includes(what)) refetch();
  })
    .then((fn) => {
      if (gone) fn();
      else unlisten = fn;
    })
    .catch((e: unknown) => console.warn("cannot follow the broker's changes", e));
  return () => {
    gone = true;
    unlisten?.();
  };
}
