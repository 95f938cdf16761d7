//! Built against vlmbench:workload@0.2.0: the host must refuse it by name.

wit_bindgen::generate!({
    path: concat!(env!("OUT_DIR"), "/wit"),
    world: "workload",
});

struct Future;

impl Guest for Future {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "future".into(),
            version: "0.2.0".into(),
            description: "from the future".into(),
            params: vec![],
        }
    }

    fn run(_params: Vec<(String, ParamValue)>) -> Result<(), String> {
        vlmbench::workload::results::note("this should never run");
        Ok(())
    }
}

export!(Future);
