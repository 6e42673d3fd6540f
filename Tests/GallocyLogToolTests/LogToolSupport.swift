import Foundation
import Gallocy
import GallocyStorage
import Testing

/// What a `gallocy` child process did.
struct ToolRun {
    var status: Int32
    var stdout: String
    var stderr: String

    var lines: [String] { stdout.split(separator: "\n").map(String.init) }
    var firstErrorLine: String { stderr.split(separator: "\n").first.map(String.init) ?? "" }

    /// Each stdout line parsed as JSON.
    func jsonLines() throws -> [JSONValue] { try lines.map { try JSONParser.parse($0) } }
}

enum LogToolSupport {
    /// The repository's `Fixtures/` directory.
    static let fixtures: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.appendingPathComponent("Fixtures").path
    }()

    /// The built `gallocy`: `$GALLOCY_BIN`, else next to the test bundle.
    static func gallocyBinary() throws -> String {
        if let path = ProcessInfo.processInfo.environment["GALLOCY_BIN"], !path.isEmpty { return path }
        var candidates = [URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()]
        if let main = Bundle.main.executableURL { candidates.append(main.deletingLastPathComponent()) }
        for directory in candidates {
            let path = directory.appendingPathComponent("gallocy").path
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        throw LogToolError(.notADataDirectory, "no gallocy binary next to \(candidates); build it or set GALLOCY_BIN")
    }

    /// Runs `gallocy` with `arguments` to its end.
    static func run(_ arguments: [String]) throws -> ToolRun {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try gallocyBinary())
        process.arguments = arguments
        process.environment = ["PATH": "/usr/bin:/bin", "SWIFT_BACKTRACE": "enable=no"]
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        // stderr is drained on another thread so that neither pipe can fill up and block the child.
        let errData = LockedData()
        let reader = Thread { errData.set(err.fileHandleForReading.readDataToEndOfFile()) }
        reader.start()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        while !errData.isSet { usleep(1000) }
        return ToolRun(
            status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
            stderr: String(decoding: errData.get(), as: UTF8.self))
    }

    /// A fresh temporary directory, removed by the caller with `remove`.
    static func temporaryDirectory(_ name: String = "logtool") throws -> String {
        let path = NSTemporaryDirectory() + "gallocy-\(name)-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// A private copy of fixture `name` (opening a directory creates its lock.mdb, and tests run
    /// in parallel).
    static func copyFixture(_ name: String) throws -> String {
        let path = try temporaryDirectory(name) + "/data"
        try FileManager.default.copyItem(atPath: fixtures + "/" + name, toPath: path)
        return path
    }

    static func remove(_ path: String) {
        try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent)
    }
}

/// A Data slot written by one thread and read by another.
final class LockedData: @unchecked Sendable {
    // @unchecked: every access holds `lock`.
    private let lock = NSLock()
    private var data: Data?
    func set(_ value: Data) {
        lock.lock()
        data = value
        lock.unlock()
    }
    var isSet: Bool {
        lock.lock()
        defer { lock.unlock() }
        return data != nil
    }
    func get() -> Data {
        lock.lock()
        defer { lock.unlock() }
        return data ?? Data()
    }
}

extension JSONValue {
    subscript(_ key: String) -> JSONValue? { objectValue?[key] }
    var arrayValue: [JSONValue]? {
        if case .array(let elements) = self { return elements }
        return nil
    }
}
