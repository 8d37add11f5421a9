extension RegistryMessage {
    /// Every request type a registry serves (1.18's, and pilot-rendezvous's `batch`): the values a
    /// metrics label may take, so that a client's made-up type cannot grow a series each.
    public static let requestTypes: Set<String> = [
        "register", "heartbeat", "deregister", "lookup", "resolve", "resolve_hostname", "set_visibility", "set_hostname",
        "set_tags", "report_trust", "revoke_trust", "check_trust", "request_handshake", "poll_handshakes", "respond_handshake",
        "punch", "rotate_key", "create_network", "join_network", "leave_network", "list_networks", "get_network_policy",
        "list_nodes", "beacon_list", "find_by_tag", "set_listing", "batch",
    ]

    /// This request's type as a metrics label: itself when it is one of `requestTypes`, else `other`.
    public var typeLabel: String { Self.requestTypes.contains(type) ? type : "other" }
}
