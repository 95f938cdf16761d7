pub mod doctor;
pub mod generate;
pub mod model;
