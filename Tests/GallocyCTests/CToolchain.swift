import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Where the C side of the tests finds its tools and inputs: gcc, the built libgallocy, the
/// header, the C fixtures.
enum CToolchain {
    /// The repository's root (this file is Tests/GallocyCTests/CToolchain.swift).
    static let repository: URL = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url
    }()

    /// The directory that holds gallocy.h.
    static var includeDirectory: String { repository.appendingPathComponent("Sources/CGallocyABI/include").path }

    /// A C program in Fixtures/c.
    static func fixture(_ name: String) -> String { repository.appendingPathComponent("Fixtures/c/\(name)").path }

    /// An executable found in PATH (or the usual system directories), nil if there is none.
    static func executable(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        let directories = path.split(separator: ":").map(String.init) + ["/usr/bin", "/bin", "/usr/local/bin"]
        for directory in directories {
            let candidate = (directory as NSString).appendingPathComponent(name)
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    static let gcc = executable("gcc")

    /// The build directory: on Linux the test bundle is an executable there, beside what
    /// `swift build` made (GALLOCY_BUILD_DIR overrides).
    static func buildDirectory() -> String {
        if let path = ProcessInfo.processInfo.environment["GALLOCY_BUILD_DIR"], !path.isEmpty { return path }
        let bundle = Bundle.main.executableURL ?? URL(fileURLWithPath: CommandLine.arguments[0])
        return bundle.resolvingSymlinksInPath().deletingLastPathComponent().path
    }

    /// The library as SwiftPM names it (the product GallocyC).
    static let builtLibraryName = "libGallocyC.so"

    /// Lays libgallocy out in `prefix` as an installation would (docs/c-api.md):
    /// lib/libgallocy.so.0 (the soname) and lib/libgallocy.so (what `-lgallocy` finds), here as
    /// symbolic links to the built library. Returns the lib directory.
    static func install(into prefix: URL) throws -> String {
        let built = (buildDirectory() as NSString).appendingPathComponent(builtLibraryName)
        guard FileManager.default.fileExists(atPath: built) else {
            throw CTestError("no \(builtLibraryName) in \(buildDirectory()): `swift build` makes it")
        }
        let lib = prefix.appendingPathComponent("lib")
        try FileManager.default.createDirectory(at: lib, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(
            atPath: lib.appendingPathComponent("libgallocy.so.0").path, withDestinationPath: built)
        try FileManager.default.createSymbolicLink(
            atPath: lib.appendingPathComponent("libgallocy.so").path, withDestinationPath: "libgallocy.so.0")
        return lib.path
    }

    /// Runs a tool to its end; its status and what it wrote (stdout and stderr together).
    static func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// A fresh temporary directory.
    static func temporaryDirectory(_ label: String) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent(
            "gallocy-c-\(label)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// `count` distinct loopback ports that were free a moment ago, below the kernel's ephemeral
    /// range (where outgoing connections take their local ports).
    static func freePorts(_ count: Int) throws -> [UInt16] {
        var upper: UInt16 = 32_768
        if let text = try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8),
            let first = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).first,
            let low = UInt16(first), low > 12_000
        {
            upper = low
        }
        var ports: [UInt16] = []
        for _ in 0..<(count * 200) where ports.count < count {
            let candidate = UInt16.random(in: (upper - 10_000)..<upper)
            if !ports.contains(candidate), isFree(candidate) { ports.append(candidate) }
        }
        guard ports.count == count else { throw CTestError("found only \(ports.count) of \(count) free ports") }
        return ports
    }

    private static func isFree(_ port: UInt16) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }
}

struct CTestError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
