import CLinux
import Glibc

/// What a thread started by `startThread` runs, and its name.
private final class ThreadStart {
    let name: String
    let body: () -> Void

    init(name: String, body: @escaping () -> Void) {
        (self.name, self.body) = (name, body)
    }
}

/// Runs `body` on a detached thread of its own, named `name` (`ps` shows its first 15 bytes).
/// For loops that block in the kernel and so must not run on an event loop. A pthread rather
/// than Foundation's `Thread`, which would link Foundation, CoreFoundation and ICU into the host.
public func startThread(named name: String, _ body: @escaping () -> Void) throws(ControlListenerError) {
    let start = Unmanaged.passRetained(ThreadStart(name: name, body: body))
    var attributes = pthread_attr_t()
    pthread_attr_init(&attributes)
    defer { pthread_attr_destroy(&attributes) }
    pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
    var thread = pthread_t()
    let result = pthread_create(
        &thread, &attributes,
        { argument in
            let start = Unmanaged<ThreadStart>.fromOpaque(argument!).takeRetainedValue()
            _ = pthread_setname_np(pthread_self(), String(start.name.utf8.prefix(15))!)
            start.body()
            return nil
        }, start.toOpaque())
    guard result == 0 else {
        start.release()
        throw .system("pthread_create", result)
    }
}
