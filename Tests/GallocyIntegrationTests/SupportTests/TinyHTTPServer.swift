import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A minimal HTTP/1.1 server on loopback for testing the client: one request per connection,
/// answered by a closure.
final class TinyHTTPServer: Sendable {
    struct Request: Sendable {
        var method: String
        var path: String
        var headers: [String: String]
        var body: [UInt8]

        var text: String { String(decoding: body, as: UTF8.self) }
    }

    enum Reply: Sendable {
        case answer(status: Int, headers: [String: String] = [:], body: [UInt8] = [], chunked: Bool = false)
        /// Bytes written as they are (for malformed answers).
        case raw([UInt8])
        /// Closes the connection without a byte: the client cannot know what happened.
        case hangUp
        /// Never answers; the client's deadline must end the wait.
        case silence

        static func json(_ status: Int, _ text: String) -> Reply {
            .answer(status: status, headers: ["Content-Type": "application/json"], body: Array(text.utf8))
        }
    }

    let port: UInt16
    private let listener: Int32
    private let handler: @Sendable (Request) -> Reply
    private let stopped = Atomic<Bool>(false)
    private let threads = Atomic<Int>(0)
    private let received = Mutex<[Request]>([])

    init(port: UInt16 = 0, _ handler: @escaping @Sendable (Request) -> Reply) throws {
        self.handler = handler
        (listener, self.port) = try Loopback.listen(port: port)
        threads.add(1, ordering: .relaxed)
        Thread.detachNewThread { [self] in
            acceptLoop()
            threads.subtract(1, ordering: .relaxed)
        }
    }

    /// Every request read so far.
    var requests: [Request] { received.withLock { $0 } }

    private func acceptLoop() {
        defer { close(listener) }
        while !stopped.load(ordering: .relaxed) {
            guard let fd = try? Loopback.accept(listener, timeout: .milliseconds(20)) else { continue }
            threads.add(1, ordering: .relaxed)
            Thread.detachNewThread { [self] in
                serve(fd)
                threads.subtract(1, ordering: .relaxed)
            }
        }
    }

    private func serve(_ fd: Int32) {
        defer { close(fd) }
        guard let request = read(fd) else { return }
        received.withLock { $0.append(request) }
        switch handler(request) {
        case .hangUp:
            return
        case .silence:
            while !stopped.load(ordering: .relaxed) {
                if case .endOfStream = Loopback.receive(fd, timeout: .milliseconds(20)) { return }
            }
        case .raw(let bytes):
            try? Loopback.sendAll(fd, bytes, timeout: .seconds(5))
        case .answer(let status, let headers, let body, let chunked):
            var head = "HTTP/1.1 \(status) Whatever\r\nConnection: close\r\n"
            for (name, value) in headers { head += "\(name): \(value)\r\n" }
            var payload: [UInt8]
            if chunked {
                head += "Transfer-Encoding: chunked\r\n\r\n"
                payload = []
                // Uneven chunks, so the client must join them.
                var offset = 0
                var size = 1
                while offset < body.count {
                    let end = min(offset + size, body.count)
                    payload +=
                        Array((String(end - offset, radix: 16) + "\r\n").utf8) + body[offset..<end] + Array("\r\n".utf8)
                    offset = end
                    size *= 3
                }
                payload += Array("0\r\n\r\n".utf8)
            } else {
                head += "Content-Length: \(body.count)\r\n\r\n"
                payload = body
            }
            try? Loopback.sendAll(fd, Array(head.utf8) + payload, timeout: .seconds(5))
        }
    }

    private func read(_ fd: Int32) -> Request? {
        var buffer: [UInt8] = []
        let deadline = ContinuousClock.now.advanced(by: .seconds(5))
        func fill() -> Bool {
            guard
                case .bytes(let chunk) = Loopback.receive(
                    fd, timeout: max(ContinuousClock.now.duration(to: deadline), .zero))
            else {
                return false
            }
            buffer += chunk
            return true
        }
        var headEnd: Int?
        while headEnd == nil {
            headEnd =
                buffer.count >= 4
                ? (3..<buffer.count).first { buffer[($0 - 3)...$0].elementsEqual([13, 10, 13, 10]) } : nil
            if headEnd == nil, !fill() { return nil }
        }
        guard let end = headEnd else { return nil }
        let lines = String(decoding: buffer[0..<(end - 3)], as: UTF8.self).components(separatedBy: "\r\n")
        let requestLine = lines[0].split(separator: " ")
        guard requestLine.count == 3 else { return nil }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(
                in: .whitespaces)
        }
        let length = Int(headers["content-length"] ?? "0") ?? 0
        var body = Array(buffer[(end + 1)...])
        while body.count < length {
            let before = buffer.count
            guard fill() else { return nil }
            body += buffer[before...]
        }
        return Request(
            method: String(requestLine[0]), path: String(requestLine[1]), headers: headers,
            body: Array(body.prefix(length)))
    }

    func stop() {
        stopped.store(true, ordering: .relaxed)
        let deadline = ContinuousClock.now.advanced(by: .seconds(5))
        while threads.load(ordering: .relaxed) > 0, ContinuousClock.now < deadline { usleep(2_000) }
    }

    deinit { stopped.store(true, ordering: .relaxed) }
}
