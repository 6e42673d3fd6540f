import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// libgallocy from C: gcc compiles C programs against gallocy.h and links them with the built
/// library laid out as an installation would be (`-lgallocy`, soname libgallocy.so.0), and three
/// processes of Fixtures/c/counter.c form a cluster. `.ci/setup` installs gcc; these tests are
/// skipped, with that reason, only where there is none.
@Suite(.serialized, .enabled(if: CToolchain.gcc != nil, "gcc is not installed (bash .ci/setup installs it)"))
struct CProgramTests {
    @Test func theHeaderCompilesAloneAsStrictC99() throws {
        let directory = try CToolchain.temporaryDirectory("header")
        defer { try? FileManager.default.removeItem(at: directory) }
        let source = directory.appendingPathComponent("header.c")
        try "#include <gallocy.h>\nint main(void) { return gallocy_last_error() == GALLOCY_OK ? 0 : 1; }\n"
            .write(to: source, atomically: true, encoding: .utf8)
        let compile = try CToolchain.run(
            CToolchain.gcc!,
            [
                "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-fsyntax-only", "-I",
                CToolchain.includeDirectory,
                source.path,
            ])
        #expect(compile.status == 0, "gcc -std=c99 -pedantic on gallocy.h:\n\(compile.output)")
    }

    @Test func libgallocyCarriesItsSoname() throws {
        let library = (CToolchain.buildDirectory() as NSString).appendingPathComponent(CToolchain.builtLibraryName)
        let readelf = try #require(CToolchain.executable("readelf"), "readelf (binutils, installed with gcc)")
        let dynamic = try CToolchain.run(readelf, ["-d", library])
        #expect(dynamic.status == 0, "\(dynamic.output)")
        #expect(dynamic.output.contains("Library soname: [libgallocy.so.0]"), "\(dynamic.output)")
        let symbols = try CToolchain.run(readelf, ["--dyn-syms", "--wide", library])
        for name in [
            "gallocy_start", "gallocy_lock", "gallocy_barrier", "gallocy_atomic_cas", "gallocy_last_error_message",
        ] {
            #expect(symbols.output.contains(" \(name)\n"), "\(name) is not exported by \(library)")
        }
    }

    /// A Swift task that calls a blocking function (here through dlopen, as a C library called
    /// from async code would) is refused at once instead of blocking a concurrency thread.
    @Test func aBlockingCallFromASwiftTaskIsRefusedWithWrongThread() async throws {
        let library = (CToolchain.buildDirectory() as NSString).appendingPathComponent(CToolchain.builtLibraryName)
        let handle = try #require(
            dlopen(library, RTLD_NOW | RTLD_LOCAL), "dlopen \(library): \(String(cString: dlerror()))")
        // Never dlclose'd: the Swift runtime keeps pointers into a loaded library's metadata.
        typealias Commit = @convention(c) (OpaquePointer?) -> Int32
        typealias Message = @convention(c) () -> UnsafePointer<CChar>?
        let commit = unsafeBitCast(try #require(dlsym(handle, "gallocy_commit")), to: Commit.self)
        let message = unsafeBitCast(try #require(dlsym(handle, "gallocy_last_error_message")), to: Message.self)
        // No member is needed: the thread is checked before anything else.
        #expect(commit(nil) == 100)  // GALLOCY_E_WRONG_THREAD
        let text = message().map { String(cString: $0) } ?? ""
        #expect(text.contains("Swift concurrency thread"), "\(text)")
    }

    /// Three C processes, each `n` increments under a lock and `n` atomic adds; after a barrier
    /// every member sees 3n in both words (and passes the program's own checks of the interface).
    @Test func threeCProcessesCountToThreeTimesNUnderALock() throws {
        let n = 15
        let directory = try CToolchain.temporaryDirectory("counter")
        var keep = false
        defer { if !keep { try? FileManager.default.removeItem(at: directory) } }

        // The documented build line, against the installed layout.
        let lib = try CToolchain.install(into: directory.appendingPathComponent("prefix"))
        let program = directory.appendingPathComponent("counter").path
        let compile = try CToolchain.run(
            CToolchain.gcc!,
            [
                "-std=c11", "-Wall", "-Wextra", "-Werror", "-I", CToolchain.includeDirectory,
                CToolchain.fixture("counter.c"), "-o", program, "-L", lib, "-lgallocy", "-Wl,-rpath,\(lib)",
            ])
        try #require(compile.status == 0, "gcc counter.c:\n\(compile.output)")

        let ports = try CToolchain.freePorts(6)
        func peerAddress(_ id: Int) -> String { "127.0.0.1:\(ports[2 * (id - 1)])" }
        var members: [(id: Int, process: Process, stdout: URL, stderr: URL)] = []
        defer {
            for member in members where member.process.isRunning { kill(member.process.processIdentifier, SIGKILL) }
        }
        for id in 1...3 {
            var arguments = [
                "--id", "\(id)", "--data", directory.appendingPathComponent("data\(id)").path,
                "--listen", peerAddress(id), "--http", "127.0.0.1:\(ports[2 * (id - 1) + 1])", "--n", "\(n)",
            ]
            for peer in 1...3 where peer != id { arguments += ["--peer", "\(peer)=\(peerAddress(peer))"] }
            let stdout = directory.appendingPathComponent("member\(id).out")
            let stderr = directory.appendingPathComponent("member\(id).err")
            _ = FileManager.default.createFile(atPath: stdout.path, contents: nil)
            _ = FileManager.default.createFile(atPath: stderr.path, contents: nil)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: program)
            process.arguments = arguments
            process.standardInput = FileHandle.nullDevice
            process.standardOutput = try FileHandle(forWritingTo: stdout)
            process.standardError = try FileHandle(forWritingTo: stderr)
            try process.run()
            members.append((id, process, stdout, stderr))
        }

        // A member that failed leaves the others waiting at a barrier for ever: then they get a
        // few seconds more to report, not the whole budget.
        var deadline = ContinuousClock.now.advanced(by: .seconds(240))
        while members.contains(where: { $0.process.isRunning }), ContinuousClock.now < deadline {
            let failed = members.contains { !$0.process.isRunning && $0.process.terminationStatus != 0 }
            if failed { deadline = min(deadline, ContinuousClock.now.advanced(by: .seconds(5))) }
            usleep(50_000)
        }
        for member in members {
            let stdout = (try? String(contentsOf: member.stdout, encoding: .utf8)) ?? ""
            let stderr = (try? String(contentsOf: member.stderr, encoding: .utf8)) ?? ""
            let context =
                "member \(member.id) (files in \(directory.path)):\nstdout: \(stdout)\nstderr: \(stderr.suffix(4000))"
            guard !member.process.isRunning else {
                keep = true
                Issue.record("member \(member.id) was still running (240 s, or 5 s after another failed); \(context)")
                continue
            }
            if member.process.terminationReason != .exit || member.process.terminationStatus != 0 { keep = true }
            #expect(member.process.terminationReason == .exit, "\(context)")
            #expect(member.process.terminationStatus == 0, "\(context)")
            let line = stdout.split(separator: "\n").last.map(String.init) ?? ""
            let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            guard let object else {
                keep = true
                Issue.record("member \(member.id) printed no JSON line; \(context)")
                continue
            }
            func number(_ key: String) -> Int? { (object[key] as? NSNumber)?.intValue }
            #expect(number("counter") == 3 * n, "\(context)")
            #expect(number("sum_of_counts") == 3 * n, "\(context)")
            #expect(number("atomic") == 3 * n, "\(context)")
            #expect(number("roots_seen") == 2, "\(context)")
            #expect(number("failures") == 0, "\(context)")
        }
    }
}
