pub mod doctor;
pub mod generate;
pub mod model;
pub mod plugins;
pub mod results;
pub mod run;
pub mod serve;
