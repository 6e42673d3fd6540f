/// The append messages in flight to one follower, as (last index, bytes), oldest first: the
/// flow-control window of a pipelined follower.
struct Inflights {
    private var items: [(index: UInt64, bytes: Int)] = []
    private var head = 0
    let maxCount: Int
    /// 0: no byte limit.
    let maxBytes: Int
    private(set) var bytes = 0

    init(maxCount: Int, maxBytes: Int) {
        self.maxCount = max(1, maxCount)
        self.maxBytes = maxBytes
    }

    var count: Int { items.count - head }
    var isFull: Bool { count >= maxCount || (maxBytes > 0 && bytes >= maxBytes) }

    mutating func add(index: UInt64, bytes: Int) {
        items.append((index, bytes))
        self.bytes += bytes
    }

    /// Frees every message whose last index is <= `index` (acknowledged).
    mutating func free(upTo index: UInt64) {
        while head < items.count, items[head].index <= index {
            bytes -= items[head].bytes
            head += 1
        }
        if head > 64 && head * 2 > items.count {
            items.removeFirst(head)
            head = 0
        }
    }

    mutating func freeFirst() {
        guard head < items.count else { return }
        free(upTo: items[head].index)
    }

    mutating func reset() {
        items.removeAll(keepingCapacity: true)
        head = 0
        bytes = 0
    }
}
