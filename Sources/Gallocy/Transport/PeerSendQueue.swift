import NIOCore

/// The frames waiting for one peer, bounded by count and bytes. When a new frame does not fit,
/// the oldest frames are dropped (and counted) to make room: Raft tolerates lost messages, and
/// the newest ones carry the freshest term, commit index and log position, which is what a peer
/// that comes back needs. A frame larger than the byte bound is still taken when the queue is
/// empty, so the peak is `maxBytes` plus one message.
package struct PeerSendQueue {
    package let maxCount: Int
    package let maxBytes: Int
    private var frames: [ByteBuffer] = []
    /// Index of the first live frame; the prefix before it is spent and compacted lazily, so
    /// that popping is O(1) without a deque.
    private var head = 0
    package private(set) var bytes = 0

    package init(maxCount: Int, maxBytes: Int) {
        self.maxCount = max(1, maxCount)
        self.maxBytes = max(1, maxBytes)
    }

    package var count: Int { frames.count - head }
    package var isEmpty: Bool { count == 0 }

    /// Adds `frame` at the tail; returns how many older frames were dropped for it.
    package mutating func append(_ frame: ByteBuffer) -> Int {
        var dropped = 0
        while !isEmpty && (count + 1 > maxCount || bytes + frame.readableBytes > maxBytes) {
            _ = popFirst()
            dropped += 1
        }
        frames.append(frame)
        bytes += frame.readableBytes
        return dropped
    }

    /// Removes and returns the oldest frame.
    package mutating func popFirst() -> ByteBuffer? {
        guard head < frames.count else { return nil }
        let frame = frames[head]
        // Release the storage now rather than when the prefix is compacted.
        frames[head] = ByteBuffer()
        head += 1
        bytes -= frame.readableBytes
        if head == frames.count {
            frames.removeAll(keepingCapacity: frames.capacity <= 4096)
            head = 0
        } else if head >= 1024 && head * 2 >= frames.count {
            frames.removeFirst(head)
            head = 0
        }
        return frame
    }

    /// Empties the queue; returns how many frames it held.
    package mutating func removeAll() -> Int {
        let n = count
        frames.removeAll()
        head = 0
        bytes = 0
        return n
    }
}
