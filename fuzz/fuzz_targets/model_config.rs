//! Any JSON as config.json: parsing gives a configuration whose checked
//! invariants hold, or an error naming the file.
#![no_main]

use engine::config::ModelConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let path = std::path::Path::new("fuzz/config.json");
    match ModelConfig::from_json(path, &value) {
        Ok(cfg) => {
            assert!(
                cfg.vision
                    .deepstack_visual_indexes
                    .iter()
                    .all(|&i| i < cfg.vision.depth)
            );
            assert_eq!(cfg.vision.out_hidden_size, cfg.text.hidden_size);
            assert!(
                3 * cfg.text.mrope_section[1].max(cfg.text.mrope_section[2])
                    <= cfg.text.head_dim / 2
            );
        }
        Err(e) => assert!(e.to_string().contains("config.json")),
    }
});
