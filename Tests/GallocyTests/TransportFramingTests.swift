import Gallocy
import GallocyRaft
import NIOCore
import Testing

/// The pure parts of the transport: frame cutting, addresses, the send queue bound, back-off.
@Suite("PeerTransport framing and bounds")
struct TransportFramingTests {
    @Test func framesSplitAcrossReadsAreReassembled() throws {
        let first = TransportFrame.encode(.message, [1, 2, 3])
        let second = TransportFrame.encode(.auth, [])
        var all = first
        var copy = second
        all.writeBuffer(&copy)
        var reader = TransportFrameReader()
        var frames: [TransportFrame] = []
        // One byte at a time: the worst a socket can do.
        for byte in all.readableBytesView {
            var one = ByteBuffer(bytes: [byte])
            reader.append(&one)
            while let frame = try reader.next(maxLength: 100) { frames.append(frame) }
        }
        #expect(frames.map(\.kind) == [.message, .auth])
        #expect(frames.first.map { Array($0.payload.readableBytesView) } == [1, 2, 3])
        #expect(frames.last?.payload.readableBytes == 0)
        #expect(reader.bufferedBytes == 0)
    }

    @Test(arguments: [
        [0, 0, 0, 0, 6] as [UInt8],  // length 0
        [0x10, 0x27, 0, 0, 6],  // 10,000 > the bound of 100
        [2, 0, 0, 0, 200, 1],  // unknown kind
    ])
    func badHeadersAreRejectedBeforeBuffering(header: [UInt8]) {
        var reader = TransportFrameReader()
        var bytes = ByteBuffer(bytes: header)
        reader.append(&bytes)
        #expect(throws: TransportFrameReader.Violation.self) { try reader.next(maxLength: 100) }
    }

    @Test func addressesParse() throws {
        #expect(try PeerAddress(parsing: "127.0.0.1:7000") == PeerAddress(host: "127.0.0.1", port: 7000))
        #expect(try PeerAddress(parsing: "node-2.local:0") == PeerAddress(host: "node-2.local", port: 0))
        #expect(try PeerAddress(parsing: "[::1]:9") == PeerAddress(host: "::1", port: 9))
        #expect(PeerAddress(host: "::1", port: 9).description == "[::1]:9")
        for bad in ["", "host", ":80", "host:", "host:70000", "host:-1", "::1:80", "[::1]80", "h:8a"] {
            #expect(throws: TransportError.self) { try PeerAddress(parsing: bad) }
        }
    }

    @Test func sendQueueDropsOldestBeyondItsBounds() {
        var queue = PeerSendQueue(maxCount: 3, maxBytes: 100)
        var dropped = 0
        for i in 0..<5 { dropped += queue.append(ByteBuffer(bytes: [UInt8(i)])) }
        #expect(dropped == 2 && queue.count == 3)
        #expect(queue.popFirst()?.readableBytesView.first == 2)
        // Bytes bound: a 90-byte frame evicts until it fits.
        dropped = queue.append(ByteBuffer(bytes: Array(repeating: 9, count: 90)))
        #expect(queue.bytes <= 100)
        #expect(dropped == 0 && queue.count == 3)
        // A frame larger than the whole bound is still taken into an empty queue.
        dropped = queue.append(ByteBuffer(bytes: Array(repeating: 1, count: 500)))
        #expect(queue.count == 1 && queue.bytes == 500)
        #expect(queue.removeAll() == 1 && queue.isEmpty && queue.bytes == 0)
    }

    @Test func backoffDoublesWithJitterUpToTheCap() {
        let backoff = ReconnectBackoff(initial: .milliseconds(20), maximum: .seconds(1))
        #expect(backoff.delay(afterFailures: 0, random: 1) == .milliseconds(20))
        #expect(backoff.delay(afterFailures: 0, random: 0) == .milliseconds(10))
        #expect(backoff.delay(afterFailures: 3, random: 1) == .milliseconds(160))
        #expect(backoff.delay(afterFailures: 50, random: 1) == .seconds(1))
        #expect(backoff.delay(afterFailures: 50, random: 0) == .milliseconds(500))
    }
}
