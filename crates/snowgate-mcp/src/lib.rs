pub mod answer;
