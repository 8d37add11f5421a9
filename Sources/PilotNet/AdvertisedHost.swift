/// The host to hand out for a socket bound to `host`: a wildcard (0.0.0.0, ::) is nobody's
/// address, so the loopback one stands in for it (right on one machine; anything wider sets an
/// address to advertise).
public func advertisedHost(bound host: String) -> String {
    ["0.0.0.0", "::"].contains(host) ? "127.0.0.1" : host
}
