// Connection snippets for the tools people point at the gateway, built from `connect_info`.
// The gateway is plain HTTP on loopback, so each snippet sets the protocol (or SSL off) and names
// the account; the user is shown for clarity, the gateway signs in as the signed-in user anyway.

import type { ConnectInfo } from "./api";

export type ToolId = "python" | "node" | "jdbc" | "odbc" | "dbt" | "snowsql";

export interface Snippet {
  tool: ToolId;
  title: string;
  /** One line on where it goes. */
  where: string;
  text: string;
}

/** The password a tool sends: its connection secret when those are required, else anything. */
export function passwordFor(info: ConnectInfo): string {
  return info.require_tool_secrets ? "<tool secret>" : "-";
}

/** The host as it goes into a URL: IPv6 addresses in brackets. */
export function urlHost(host: string): string {
  return host.includes(":") ? `[${host}]` : host;
}

/** The account a tool using `role` names: the role's own, else the default. */
export function accountFor(info: ConnectInfo, role: string): string {
  return info.role_accounts?.[role] ?? info.account;
}

export function snippets(info: ConnectInfo, role: string): Snippet[] {
  const { user, port } = info;
  const account = accountFor(info, role);
  const host = info.host;
  const url = urlHost(host);
  const password = passwordFor(info);
  const roleLine = role || "MY_ROLE";
  return [
    {
      tool: "python",
      title: "Python (snowflake-connector-python)",
      where: "In a script or notebook.",
      text: [
        "import snowflake.connector",
        "",
        "conn = snowflake.connector.connect(",
        `    account="${account}",`,
        `    user="${user}",`,
        `    password="${password}",`,
        `    host="${host}",`,
        `    port=${port},`,
        `    protocol="http",`,
        `    role="${roleLine}",`,
        ")",
      ].join("\n"),
    },
    {
      tool: "node",
      title: "Node.js (snowflake-sdk)",
      where: "In your program.",
      text: [
        "const snowflake = require('snowflake-sdk');",
        "",
        "const conn = snowflake.createConnection({",
        `  account: '${account}',`,
        `  username: '${user}',`,
        `  password: '${password}',`,
        `  accessUrl: 'http://${url}:${port}',`,
        `  role: '${roleLine}',`,
        "});",
      ].join("\n"),
    },
    {
      tool: "jdbc",
      title: "JDBC URL (DBeaver, Tableau, DataGrip)",
      where: "As the connection URL; user and password below.",
      text: [
        `jdbc:snowflake://${url}:${port}/?account=${account}&ssl=off&role=${roleLine}`,
        `User: ${user}`,
        `Password: ${password}`,
      ].join("\n"),
    },
    {
      tool: "odbc",
      title: "ODBC DSN (Power BI, Excel)",
      where: "In odbc.ini, or the same fields in the ODBC data source dialog.",
      text: [
        "[Snowgate]",
        "Driver = SnowflakeDSIIDriver",
        `Server = ${host}`,
        `Port = ${port}`,
        "SSL = off",
        `Account = ${account}`,
        `Role = ${roleLine}`,
        `UID = ${user}`,
        `PWD = ${password}`,
      ].join("\n"),
    },
    {
      tool: "dbt",
      title: "dbt (profiles.yml)",
      where: "In ~/.dbt/profiles.yml; set database, warehouse and schema to yours.",
      text: [
        "my_project:",
        "  target: dev",
        "  outputs:",
        "    dev:",
        "      type: snowflake",
        `      account: ${account}`,
        `      user: ${user}`,
        `      password: "${password}"`,
        `      role: ${roleLine}`,
        `      host: ${host}`,
        `      port: ${port}`,
        "      protocol: http",
        "      database: MY_DB",
        "      warehouse: MY_WH",
        "      schema: PUBLIC",
        "      threads: 4",
      ].join("\n"),
    },
    {
      tool: "snowsql",
      title: "SnowSQL",
      where: "In ~/.snowsql/config, then run: snowsql -c snowgate",
      text: [
        "[connections.snowgate]",
        `accountname = ${account}`,
        `username = ${user}`,
        `password = ${password}`,
        `host = ${host}`,
        `port = ${port}`,
        "protocol = http",
        `rolename = ${roleLine}`,
      ].join("\n"),
    },
  ];
}
