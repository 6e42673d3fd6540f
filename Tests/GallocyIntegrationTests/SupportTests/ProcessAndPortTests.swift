import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Ports, child processes and finding `gallocy`: the parts of the cluster harness that need no node.
@Suite struct ProcessAndPortTests {
    static func temporaryDirectory() throws -> String {
        var template = Array("/tmp/gallocy-support-test-XXXXXX".utf8CString)
        guard
            let made = template.withUnsafeMutableBufferPointer({ buffer in buffer.baseAddress.flatMap { mkdtemp($0) } })
        else {
            throw TestSupportError(.file, "mkdtemp failed")
        }
        return String(cString: made)
    }

    @Test func freePortsAreDistinctBindableAndBelowTheEphemeralRange() throws {
        let ports = try FreePorts.take(20)
        #expect(Set(ports).count == 20)
        let ephemeral = FreePorts.ephemeralLowerBound()
        #expect(ports.allSatisfy { $0 < ephemeral && $0 > 1_024 })
        for port in ports.prefix(5) {
            let listener = try Loopback.listen(port: port)
            #expect(listener.port == port)
            close(listener.fd)
        }
        // Never handed out twice by one process.
        let more = try FreePorts.take(20)
        #expect(Set(ports).isDisjoint(with: more))
    }

    @Test func spawnedProcessRunsAndDiesOnSIGKILL() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let process = try ChildProcess.spawn(
            executable: "sleep", arguments: ["30"],
            standardOutput: "\(directory)/out", standardError: "\(directory)/err")
        #expect(process.isRunning)
        #expect(ChildProcess.livePids.contains(process.pid))
        #expect(process.killAndReap() == .signaled(SIGKILL))
        #expect(!process.isRunning)
        #expect(!ChildProcess.livePids.contains(process.pid))
        // Once reaped, signals are no longer sent: the pid may belong to someone else now.
        #expect(!process.send(SIGTERM))
    }

    @Test func stoppedProcessResumesAndTerminates() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let process = try ChildProcess.spawn(
            executable: "sleep", arguments: ["30"],
            standardOutput: "\(directory)/out", standardError: "\(directory)/err")
        #expect(process.send(SIGSTOP))
        #expect(process.wait(timeout: .milliseconds(100)) == nil)
        #expect(process.send(SIGCONT))
        // `terminate` continues a stopped process before SIGTERM, and sleep dies of SIGTERM.
        #expect(process.send(SIGSTOP))
        #expect(process.terminate(grace: .seconds(5)) == .signaled(SIGTERM))
    }

    @Test func outputGoesToFilesAndExitStatusIsReported() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let process = try ChildProcess.spawn(
            executable: "/bin/sh", arguments: ["-c", "echo out-$GREETING; echo err >&2; exit 3"],
            environment: ["GREETING": "hi"],
            standardOutput: "\(directory)/out", standardError: "\(directory)/err")
        #expect(process.wait(timeout: .seconds(10)) == .exited(3))
        #expect(try String(contentsOfFile: "\(directory)/out", encoding: .utf8) == "out-hi\n")
        #expect(try String(contentsOfFile: "\(directory)/err", encoding: .utf8) == "err\n")
    }

    @Test func childStartsWithDefaultSignalDispositions() throws {
        // The test process may ignore SIGPIPE; a node must not inherit that.
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let previous = signal(SIGPIPE, SIG_IGN)
        defer { signal(SIGPIPE, previous) }
        let process = try ChildProcess.spawn(
            executable: "/bin/sh", arguments: ["-c", "grep -E '^SigIgn' /proc/self/status"],
            standardOutput: "\(directory)/out", standardError: "\(directory)/err")
        #expect(process.wait(timeout: .seconds(10)) == .exited(0))
        let line = try String(contentsOfFile: "\(directory)/out", encoding: .utf8)
        let mask = UInt64(
            line.split(separator: "\t").last?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "", radix: 16)
        let sigpipeBit: UInt64 = 1 << UInt64(SIGPIPE - 1)
        #expect(mask.map { $0 & sigpipeBit == 0 } == true, "SigIgn: \(line)")
    }

    @Test func childInheritsNoDescriptorsButTheStandardOnes() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // A descriptor opened without O_CLOEXEC, moved high so it cannot be confused with the
        // child's own.
        let plain = open("\(directory)/held", O_WRONLY | O_CREAT, 0o644)
        #expect(plain >= 0)
        let high = fcntl(plain, F_DUPFD, 300)
        close(plain)
        defer { close(high) }
        #expect(high >= 300)
        let process = try ChildProcess.spawn(
            executable: "/bin/sh", arguments: ["-c", "ls /proc/self/fd"],
            standardOutput: "\(directory)/out", standardError: "\(directory)/err")
        #expect(process.wait(timeout: .seconds(10)) == .exited(0))
        let listed = try String(contentsOfFile: "\(directory)/out", encoding: .utf8).split(separator: "\n").compactMap {
            Int32($0)
        }
        #expect(!listed.contains(high), "child descriptors: \(listed)")
        #expect(listed.contains(0) && listed.contains(1) && listed.contains(2))
    }

    @Test func missingExecutableIsAClearError() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        #expect(throws: TestSupportError.self) {
            _ = try ChildProcess.spawn(
                executable: "/nonexistent/gallocy", arguments: [],
                standardOutput: "\(directory)/out", standardError: "\(directory)/err")
        }
    }

    @Test func gallocyIsFoundNextToTheTestBundleAndRuns() throws {
        let executable = try Cluster.gallocyExecutable()
        #expect(executable.hasSuffix("/gallocy"))
        // Under `swift test` on Linux, argv[0] is the test bundle executable in the build directory.
        if ProcessInfo.processInfo.environment["GALLOCY_BIN"] == nil, let first = CommandLine.arguments.first {
            let sibling = URL(fileURLWithPath: first).deletingLastPathComponent().appendingPathComponent("gallocy").path
            #expect(FileManager.default.isExecutableFile(atPath: sibling), "argv[0] = \(first)")
        }
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let process = try ChildProcess.spawn(
            executable: executable, arguments: ["--help"],
            standardOutput: "\(directory)/out", standardError: "\(directory)/err")
        #expect(process.wait(timeout: .seconds(30)) == .exited(0))
        let help = try String(contentsOfFile: "\(directory)/out", encoding: .utf8)
        #expect(help.contains("USAGE") || help.contains("Usage") || help.contains("usage"), "\(help.prefix(300))")
    }
}
