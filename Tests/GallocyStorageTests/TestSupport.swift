import Foundation
import GallocyRaft
import Synchronization

@testable import GallocyStorage

/// A fresh directory under the system's temporary directory, removed with everything in it when
/// `body` returns.
func withTemporaryDirectory<R>(_ body: (String) throws -> R) throws -> R {
    var template = Array((NSTemporaryDirectory() + "/gallocy-storage-XXXXXX").utf8CString)
    guard let made = template.withUnsafeMutableBufferPointer({ buffer in buffer.baseAddress.flatMap { mkdtemp($0) } })
    else {
        throw StorageError(.io, "mkdtemp failed")
    }
    let path = String(cString: made)
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try body(path)
}

/// Entries `range` of term `term`, each with a little data that depends on index and term.
func makeEntries(_ range: ClosedRange<UInt64>, term: UInt64, size: Int = 16) -> [Entry] {
    range.map { index in
        Entry(
            term: term, index: index,
            data: (0..<size).map { UInt8(truncatingIfNeeded: Int(index) &* 31 &+ Int(term) &+ $0) })
    }
}

/// Writes `value` under `key` in `database` of the LMDB environment in `path` (or deletes the
/// key when `value` is nil), bypassing every check: used to plant damage.
func rawPut(_ path: String, database: String, key: [UInt8], value: [UInt8]?) throws {
    let env = try LMDBEnvironment(path: path, configuration: .init(maxDatabases: 4))
    let db = try env.openDatabase(database, create: false)
    try env.write { txn in
        if let value { try txn.put(value, forKey: key, in: db) } else { try txn.delete(key, in: db) }
    }
}

/// Reads the raw value under `key`.
func rawGet(_ path: String, database: String, key: [UInt8]) throws -> [UInt8]? {
    let env = try LMDBEnvironment(path: path, configuration: .init(maxDatabases: 4, readOnly: true))
    let db = try env.openDatabase(database, create: false)
    return try env.read { txn in try txn.get(key, in: db).map { Array($0) } }
}

func bigEndianKey(_ index: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: index >> (56 - 8 * $0)) } }

/// Runs `writer` on the calling thread while `readers` OS threads (not the dispatch pool, which a
/// loaded test run may not schedule in time) call `read` over and over, each at least once
/// and until `writer` has returned; then waits for the readers.
func whileReading(readers: Int, _ read: @escaping @Sendable () -> Void, write writer: () -> Void) {
    let done = ManagedAtomicFlag()
    let finished = DispatchSemaphore(value: 0)
    for _ in 0..<readers {
        Thread.detachNewThread {
            repeat { read() } while !done.isSet
            finished.signal()
        }
    }
    writer()
    done.set()
    for _ in 0..<readers { finished.wait() }
}

/// A flag shared between threads.
final class ManagedAtomicFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    var isSet: Bool { flag.load(ordering: .acquiring) }
    func set() { flag.store(true, ordering: .releasing) }
}

/// A list of failures shared between threads.
final class FailureLog: Sendable {
    private let items = Mutex<[String]>([])
    func record(_ failure: String) { items.withLock { $0.append(failure) } }
    var all: [String] { items.withLock { $0 } }
}

/// A counter shared between threads.
final class SharedCounter: Sendable {
    private let value = Atomic<Int>(0)
    func increment() { value.add(1, ordering: .relaxed) }
    var count: Int { value.load(ordering: .relaxed) }
}
