import Foundation
import Glibc
import Testing

@testable import GallocyStorage

@Suite struct DataDirectoryLockTests {
    @Test func secondLockInTheSameProcessConflicts() throws {
        try withTemporaryDirectory { path in
            let first = try DataDirectory(path: path + "/a/b")
            let error = #expect(throws: StorageError.self) { _ = try DataDirectory(path: path + "/a/b") }
            #expect(error?.code == .inUse)
            #expect(error?.message == "data directory \(path)/a/b is in use by another process (pid \(getpid()))")
            first.release()
            _ = try DataDirectory(path: path + "/a/b")
        }
    }

    @Test func secondStorageOpeningIsRefused() throws {
        try withTemporaryDirectory { path in
            let storage = try RaftStorage(path: path)
            let error = #expect(throws: StorageError.self) { _ = try RaftStorage(path: path) }
            #expect(error?.code == .inUse)
            // Read-only openers do not take the lock.
            _ = try RaftStorage(path: path, options: .init(readOnly: true))
            _ = storage
        }
    }

    @Test func anotherProcessIsRefusedWithTheHoldersPID() throws {
        try withTemporaryDirectory { path in
            let held = try DataDirectory(path: path)
            let child = try ChildProcess(["internal", "hold-lock", "--data", path, "--seconds", "5"])
            #expect(child.exitCode == 1)
            let message = child.readStandardError()
            #expect(
                message.contains("data directory \(path) is in use by another process (pid \(getpid()))"), "\(message)")
            held.release()
        }
    }

    @Test func lockHeldByAnotherProcessIsRefusedAndFreedWhenItDies() throws {
        try withTemporaryDirectory { path in
            let child = try ChildProcess(["internal", "hold-lock", "--data", path, "--seconds", "30"])
            let line = try #require(child.readLine())
            #expect(line == "locked \(child.pid)")
            let error = #expect(throws: StorageError.self) { _ = try DataDirectory(path: path) }
            #expect(error?.code == .inUse)
            #expect(error?.message.contains("(pid \(child.pid))") == true)
            #expect(DataDirectory.recordedHolder(of: path) == child.pid)
            child.kill(SIGKILL)
            child.waitForExit()
            _ = try DataDirectory(path: path)
        }
    }
}
