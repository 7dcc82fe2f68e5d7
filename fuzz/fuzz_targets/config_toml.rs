//! The configuration file: whatever an operator types, loading it ends in a config or an
//! error message, never a panic; a config that loads also builds the Go and staging
//! front-ends' state (or fails with a message), and writing it back out gives a file that
//! loads to the same config.
#![no_main]

use intact_server::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(config) = Config::from_toml(text) else { return };
    let _ = intact_server::go::GoState::new(&config);
    let _ = intact_server::staging::StagingState::new(&config);
    let written = toml::to_string(&config).expect("a loaded config serializes");
    let again =
        Config::from_toml(&written).unwrap_or_else(|e| panic!("a written config must load again: {e:#}\n{written}"));
    assert_eq!(
        toml::to_string(&again).expect("serializes"),
        written,
        "the config changed through a write and a load"
    );
});
