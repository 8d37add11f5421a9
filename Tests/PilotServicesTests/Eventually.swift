/// Waits until `condition` holds or `limit` passes, looking every few milliseconds; returns
/// whether it held. The services work in tasks of their own: a test waits for what they do
/// with this, not with a sleep long enough on a quiet machine.
func eventually(within limit: Duration = .seconds(5), _ condition: () async -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + limit
    while ContinuousClock.now < deadline {
        if await condition() { return true }
        try? await Task.sleep(for: .milliseconds(5))
    }
    return await condition()
}
