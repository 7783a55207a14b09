//! Tests of the full chain `app -> sixpath-client (phone) ==MPTCP==>
//! sixpath-server (operator) -> origin (internet)`, to add once
//! `sixpath-client` exists. Each reuses a function that already runs today
//! against `sixpath-server` directly, with the client's local entry point
//! (e.g. `127.0.0.1:1080` in the phone namespace) instead:
//!
//! | test to add | reuses |
//! |---|---|
//! | `client_chain_curl_gets_identical_1k_and_64m_bodies` | [`crate::proxy::assert_curl_bodies_identical`] |
//! | `client_chain_download_uses_both_links_at_90_percent_of_their_sum` | [`crate::mptcp::assert_download_aggregates`] with `Route::Socks5 { proxy: client entry, .. }` and a TCP socket from the app |
//! | `client_chain_upload_uses_both_links_at_90_percent_of_their_sum` | [`crate::mptcp::assert_upload_aggregates`] with the client's entry point |
//! | `client_chain_download_survives_wifi_down_and_finishes_on_lte` | [`crate::mptcp::assert_wifi_failover`] |
//! | `client_chain_lte_backup_carries_nothing_until_wifi_fails` | `scripts/testbed backup on`, then the two above (LTE share ~0 %, then failover) |
//! | `client_chain_socks6_request_rides_in_the_syn` | `nstat` `TcpExtTCPFastOpenActive` in the phone and `...Passive` in the operator grow per connection |
//! | `client_chain_convert_mode_gets_identical_bodies` | [`crate::proxy::assert_curl_bodies_identical`] with the client in Convert mode |
//! | `client_chain_download_with_loss_keeps_the_bytes` | `--loss 0.005`, then [`crate::mptcp::assert_download_aggregates`]'s byte and SHA-256 checks |

/// The names of the chain tests still to write (see the module docs).
#[expect(
    dead_code,
    reason = "a checklist for people; each entry becomes a test"
)]
pub const CLIENT_CHAIN_TESTS_TO_ADD: &[&str] = &[
    "client_chain_curl_gets_identical_1k_and_64m_bodies",
    "client_chain_download_uses_both_links_at_90_percent_of_their_sum",
    "client_chain_upload_uses_both_links_at_90_percent_of_their_sum",
    "client_chain_download_survives_wifi_down_and_finishes_on_lte",
    "client_chain_lte_backup_carries_nothing_until_wifi_fails",
    "client_chain_socks6_request_rides_in_the_syn",
    "client_chain_convert_mode_gets_identical_bodies",
    "client_chain_download_with_loss_keeps_the_bytes",
];
