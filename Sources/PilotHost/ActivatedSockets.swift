import Glibc
public import PilotSystemd

/// The sockets systemd passed (socket activation), sorted by role: by `FileDescriptorName=`
/// (`tunnel`, `admin`), else by kind (a UDP socket is a tunnel socket, a listening Unix stream
/// socket the admin socket). Anything else is refused, so that a wrong unit is noticed at start.
public struct ActivatedSockets: Sendable, Equatable {
    /// UDP sockets for the tunnels; the first is the shared one.
    public var tunnels: [Int32] = []
    public var admin: Int32?

    public init() {}

    public init(_ sockets: [Systemd.ListenedSocket]) throws(ConfigurationError) {
        for socket in sockets {
            let isUDP = socket.isDatagram && (socket.family == AF_INET || socket.family == AF_INET6)
            let isUnixStream = socket.isStream && socket.family == AF_UNIX
            // A name says the role; a socket without one of ours is taken by its kind.
            let role = ["tunnel", "admin"].contains(socket.name) ? socket.name : isUDP ? "tunnel" : isUnixStream ? "admin" : socket.name
            switch role {
            case "tunnel" where isUDP:
                tunnels.append(socket.descriptor)
            case "admin" where isUnixStream:
                guard admin == nil else {
                    throw .invalidValue(key: "socket activation", value: socket.name, reason: "more than one admin socket passed")
                }
                admin = socket.descriptor
            default:
                throw .invalidValue(
                    key: "socket activation", value: "fd \(socket.descriptor) named \(socket.name)",
                    reason: "expected a UDP socket (tunnel) or a Unix stream socket (admin)")
            }
        }
    }

    public var isEmpty: Bool { tunnels.isEmpty && admin == nil }
}
