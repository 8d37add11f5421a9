/// An identity of this host (`local`) and a remote node: what a tunnel, a pending key exchange,
/// a relation and a trust are kept by.
struct NodePair: Hashable {
    let local: UInt32
    let remote: UInt32
}
