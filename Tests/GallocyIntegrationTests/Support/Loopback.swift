#if canImport(Glibc)
    import Glibc
#endif

/// Thin wrappers over the POSIX socket calls the test tools need, for IPv4 on loopback only.
/// Each names the call it wraps; EINTR is retried; failures become `TestSupportError`.
enum Loopback {
    static let host = "127.0.0.1"

    /// What one `receive` got.
    enum Received: Equatable {
        case bytes([UInt8])
        case endOfStream
        case timedOut
        case failed(Int32)
    }

    static func errorText(_ code: Int32 = errno) -> String {
        String(cString: strerror(code)) + " (errno \(code))"
    }

    /// A `sockaddr_in` for a dotted IPv4 address (inet_pton).
    static func address(host: String, port: UInt16) throws -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else {
            throw TestSupportError(.socket, "not an IPv4 address: \(host)")
        }
        return address
    }

    private static func newSocket() throws -> Int32 {
        // SOCK_CLOEXEC: the nodes a test spawns must not inherit the test's sockets, or a closed
        // connection would stay open in a child.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestSupportError(.socket, "socket: \(errorText())") }
        return fd
    }

    /// A listening socket (socket, setsockopt SO_REUSEADDR, bind, listen); port 0 picks a free one.
    static func listen(host: String = Loopback.host, port: UInt16 = 0, backlog: Int32 = 128) throws -> (
        fd: Int32, port: UInt16
    ) {
        let fd = try newSocket()
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = try self.address(host: host, port: port)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0 else {
            let text = errorText()
            close(fd)
            throw TestSupportError(.socket, "bind \(host):\(port): \(text)")
        }
        guard Glibc.listen(fd, backlog) == 0 else {
            let text = errorText()
            close(fd)
            throw TestSupportError(.socket, "listen: \(text)")
        }
        return (fd, try localPort(fd))
    }

    /// The port a socket is bound to (getsockname).
    static func localPort(_ fd: Int32) throws -> UInt16 {
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let result = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard result == 0 else { throw TestSupportError(.socket, "getsockname: \(errorText())") }
        return UInt16(bigEndian: address.sin_port)
    }

    /// Connects with a deadline (a non-blocking connect, poll, SO_ERROR), then returns a blocking
    /// socket with TCP_NODELAY. Throws `.connect` when refused or unreachable, `.timeout` on time.
    static func connect(host: String = Loopback.host, port: UInt16, timeout: Duration) throws -> Int32 {
        let fd = try newSocket()
        var address = try self.address(host: host, port: port)
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        let started = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        if started != 0 {
            let code = errno
            guard code == EINPROGRESS || code == EINTR else {
                close(fd)
                throw TestSupportError(.connect, "connect \(host):\(port): \(errorText(code))")
            }
            switch waitFor(fd, events: Int16(POLLOUT), timeout: timeout) {
            case .ready:
                break
            case .timedOut:
                close(fd)
                throw TestSupportError(.timeout, "connect \(host):\(port): no answer within \(timeout)")
            case .failed(let code):
                close(fd)
                throw TestSupportError(.connect, "connect \(host):\(port): poll: \(errorText(code))")
            }
            var soError: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &length)
            guard soError == 0 else {
                close(fd)
                throw TestSupportError(.connect, "connect \(host):\(port): \(errorText(soError))")
            }
        }
        _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK)
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        return fd
    }

    enum Readiness: Equatable {
        case ready
        case timedOut
        case failed(Int32)
    }

    /// Waits until `fd` has one of `events` (poll). POLLHUP and POLLERR count as ready, so that the
    /// caller's next call reports them.
    static func waitFor(_ fd: Int32, events: Int16, timeout: Duration) -> Readiness {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        while true {
            let remaining = ContinuousClock.now.duration(to: deadline)
            let milliseconds = max(
                0,
                Int32(
                    clamping: remaining.components.seconds * 1_000 + remaining.components.attoseconds
                        / 1_000_000_000_000_000))
            var descriptor = pollfd(fd: fd, events: events, revents: 0)
            let result = poll(&descriptor, 1, milliseconds)
            if result > 0 { return .ready }
            if result == 0 {
                if ContinuousClock.now >= deadline { return .timedOut }
                continue
            }
            if errno == EINTR { continue }
            return .failed(errno)
        }
    }

    /// Accepts one connection if one arrives within `timeout` (poll, accept4 with SOCK_CLOEXEC).
    static func accept(_ listener: Int32, timeout: Duration) throws -> Int32? {
        switch waitFor(listener, events: Int16(POLLIN), timeout: timeout) {
        case .timedOut: return nil
        case .failed(let code): throw TestSupportError(.socket, "poll: \(errorText(code))")
        case .ready: break
        }
        // accept4 needs _GNU_SOURCE, which Glibc's module does not define; FD_CLOEXEC follows at
        // once, and the tests spawn children from other threads only through posix_spawn, so the
        // short window matters only for a concurrent spawn.
        let fd = Glibc.accept(listener, nil, nil)
        if fd < 0 {
            // The connection may have gone away between poll and accept; that is not an error.
            if errno == EAGAIN || errno == ECONNABORTED || errno == EINTR { return nil }
            throw TestSupportError(.socket, "accept: \(errorText())")
        }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        return fd
    }

    /// Receives up to `maximum` bytes, waiting at most `timeout` (poll, recv).
    static func receive(_ fd: Int32, maximum: Int = 65_536, timeout: Duration) -> Received {
        switch waitFor(fd, events: Int16(POLLIN), timeout: timeout) {
        case .timedOut: return .timedOut
        case .failed(let code): return .failed(code)
        case .ready: break
        }
        var buffer = [UInt8](repeating: 0, count: maximum)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, maximum, 0) }
            if count > 0 { return .bytes(Array(buffer[0..<count])) }
            if count == 0 { return .endOfStream }
            if errno == EINTR { continue }
            if errno == EAGAIN { return .timedOut }
            return .failed(errno)
        }
    }

    /// Sends every byte before `timeout` passes (poll, send with MSG_NOSIGNAL so a closed peer is
    /// an error rather than SIGPIPE).
    static func sendAll(_ fd: Int32, _ bytes: [UInt8], timeout: Duration) throws {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        var offset = 0
        while offset < bytes.count {
            let remaining = ContinuousClock.now.duration(to: deadline)
            switch waitFor(fd, events: Int16(POLLOUT), timeout: max(remaining, .zero)) {
            case .timedOut:
                throw TestSupportError(.timeout, "send: \(bytes.count - offset) bytes not sent within \(timeout)")
            case .failed(let code): throw TestSupportError(.socket, "poll: \(errorText(code))")
            case .ready: break
            }
            let sent = bytes.withUnsafeBytes {
                send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
            }
            if sent > 0 {
                offset += sent
            } else if sent < 0, errno == EINTR || errno == EAGAIN {
                continue
            } else {
                throw TestSupportError(.closed, "send: \(errorText())")
            }
        }
    }

    /// Closes so that the peer sees a reset rather than an orderly end (SO_LINGER 0, close): what a
    /// refused or cut link looks like.
    static func closeWithReset(_ fd: Int32) {
        var option = linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &option, socklen_t(MemoryLayout<linger>.size))
        close(fd)
    }
}
