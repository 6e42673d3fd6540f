import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The cluster harness with a stand-in for `gallocy node` (a shell script that prints its flags
/// and sleeps), since the real node is not needed to test process control, flags and links.
@Suite struct ClusterHarnessTests {
    /// A directory holding an executable script that acts as a node: it prints its arguments,
    /// writes a line to stderr and sleeps (exec, so signals reach `sleep` itself).
    final class FakeNode {
        let directory: String
        let executable: String

        init() throws {
            var template = Array("/tmp/gallocy-fake-node-XXXXXX".utf8CString)
            guard
                let made = template.withUnsafeMutableBufferPointer({ buffer in
                    buffer.baseAddress.flatMap { mkdtemp($0) }
                })
            else {
                throw TestSupportError(.file, "mkdtemp failed")
            }
            directory = String(cString: made)
            executable = "\(directory)/fake-gallocy"
            let script = "#!/bin/sh\necho \"fake node: $*\"\necho \"fake stderr\" >&2\nexec sleep 600\n"
            try script.write(toFile: executable, atomically: true, encoding: .utf8)
            chmod(executable, 0o755)
        }

        deinit { try? FileManager.default.removeItem(atPath: directory) }

        func options(size: Int = 3, proxied: Bool = true) -> Cluster.Options {
            var options = Cluster.Options(size: size, proxied: proxied)
            options.executable = executable
            options.heapSize = "16M"
            return options
        }
    }

    static func flags(_ arguments: [String], _ name: String) -> [String] {
        arguments.indices.filter { arguments[$0] == name && $0 + 1 < arguments.count }.map { arguments[$0 + 1] }
    }

    @Test func flagsFollowTheContractAndPeersGoThroughProxies() throws {
        let fake = try FakeNode()
        let cluster = try Cluster(fake.options())
        defer { cluster.shutdown() }
        #expect(cluster.ids == [1, 2, 3])
        var ports: [UInt16] = []
        for id in cluster.ids {
            let member = cluster.member(id)
            let arguments = member.arguments
            #expect(arguments.first == "node")
            #expect(Self.flags(arguments, "--id") == ["\(id)"])
            #expect(Self.flags(arguments, "--data") == ["\(cluster.directory)/n\(id)"])
            #expect(Self.flags(arguments, "--listen") == ["127.0.0.1:\(member.listenPort)"])
            #expect(Self.flags(arguments, "--http") == ["127.0.0.1:\(member.httpPort)"])
            #expect(Self.flags(arguments, "--heap-size") == ["16M"])
            let peers = Self.flags(arguments, "--peer")
            #expect(peers.count == 2)
            for peer in cluster.ids where peer != id {
                let proxy = try #require(cluster.proxy(from: id, to: peer))
                #expect(peers.contains("\(peer)=\(proxy.address)"))
                #expect(proxy.targetPort == cluster.member(peer).listenPort)
            }
            ports += [member.listenPort, member.httpPort]
        }
        #expect(Set(ports).count == 6)
        // Each member has its own proxy for the same peer.
        #expect(cluster.proxy(from: 1, to: 3)?.port != cluster.proxy(from: 2, to: 3)?.port)
    }

    @Test func unproxiedPeersAreTheListenAddresses() throws {
        let fake = try FakeNode()
        let cluster = try Cluster(fake.options(size: 2, proxied: false))
        defer { cluster.shutdown() }
        #expect(Self.flags(cluster.member(1).arguments, "--peer") == ["2=127.0.0.1:\(cluster.member(2).listenPort)"])
        #expect(cluster.proxy(from: 1, to: 2) == nil)
    }

    @Test func processesStartStopPauseAndRestartWithTheirLogs() async throws {
        let fake = try FakeNode()
        let cluster = try Cluster(fake.options())
        defer { cluster.shutdown() }
        try cluster.startAll()
        #expect(cluster.liveIDs == [1, 2, 3])
        try await eventually("member 1 printed its flags", timeout: .seconds(10)) {
            cluster.logTail(1).contains("fake node: node --id 1 --data")
        }
        #expect(cluster.logTail(1).contains("fake stderr"))
        #expect(throws: TestSupportError.self) { try cluster.start(1) }

        #expect(cluster.kill(1) == .signaled(SIGKILL))
        #expect(!cluster.isRunning(1))
        #expect(cluster.liveIDs == [2, 3])
        try cluster.restart(1)
        #expect(cluster.isRunning(1))
        try await eventually("member 1 started twice", timeout: .seconds(10)) {
            cluster.logTail(1, lines: 100).contains("start #2 of member 1")
                && cluster.logTail(1, lines: 100).components(separatedBy: "fake node: node --id 1").count == 3
        }

        cluster.pause(2)
        #expect(cluster.liveIDs == [1, 3])
        #expect(cluster.isRunning(2))
        cluster.resume(2)
        #expect(cluster.liveIDs == [1, 2, 3])

        cluster.pause(3)
        #expect(cluster.terminate(3, grace: .seconds(5)) == .signaled(SIGTERM))
        #expect(cluster.exitStatus(3) == .signaled(SIGTERM))

        let pids = cluster.ids.compactMap { cluster.pid($0) }
        #expect(pids.count == 3)
        cluster.shutdown()
        #expect(ChildProcess.livePids.isDisjoint(with: pids))
        #expect(!FileManager.default.fileExists(atPath: cluster.directory))
        #expect(cluster.liveIDs.isEmpty)
        #expect(throws: TestSupportError.self) { try cluster.start(1) }
    }

    @Test func linksAreCutHealedAndPartitionedPerPair() throws {
        let fake = try FakeNode()
        let cluster = try Cluster(fake.options())
        defer { cluster.shutdown() }
        func isCut(_ a: Int, _ b: Int) -> Bool { cluster.proxy(from: a, to: b)?.isCut ?? false }

        cluster.cut(1, 2)
        #expect(isCut(1, 2) && isCut(2, 1))
        #expect(!isCut(1, 3) && !isCut(3, 1) && !isCut(2, 3))
        cluster.heal(1, 2)
        #expect(!isCut(1, 2) && !isCut(2, 1))

        cluster.partition([[1], [2, 3]])
        #expect(isCut(1, 2) && isCut(2, 1) && isCut(1, 3) && isCut(3, 1))
        #expect(!isCut(2, 3) && !isCut(3, 2))
        cluster.partition([[1, 3], [2]])
        #expect(!isCut(1, 3) && isCut(1, 2) && isCut(3, 2))
        cluster.healAll()
        #expect(cluster.ids.allSatisfy { a in cluster.ids.allSatisfy { b in a == b || !isCut(a, b) } })

        cluster.isolate(3)
        #expect(isCut(1, 3) && isCut(3, 1) && isCut(2, 3) && isCut(3, 2) && !isCut(1, 2))
        cluster.healAll()
    }

    @Test func cutLinkStopsTrafficBetweenTheMembersPorts() throws {
        // A real byte path: an echo server stands in for member 2's listen port.
        let fake = try FakeNode()
        let cluster = try Cluster(fake.options(size: 2))
        defer { cluster.shutdown() }
        let proxy = try #require(cluster.proxy(from: 1, to: 2))
        let echo = try EchoServer(port: cluster.member(2).listenPort)
        defer { echo.stop() }
        let connection = try TestConnection(port: proxy.port)
        try connection.send([1])
        #expect(connection.receive(count: 1).bytes == [1])
        cluster.cut(1, 2)
        #expect(connection.isDead())
        cluster.heal(1, 2)
        let again = try TestConnection(port: proxy.port)
        try again.send([2])
        #expect(again.receive(count: 1).bytes == [2])
    }

    @Test func runCleansUpAndRethrowsWhenTheBodyFails() async throws {
        struct Boom: Error {}
        let fake = try FakeNode()
        let directory = Mutex<String>("")
        let pids = Mutex<[pid_t]>([])
        await #expect(throws: Boom.self) {
            try await Cluster.run(fake.options()) { cluster in
                directory.withLock { $0 = cluster.directory }
                pids.withLock { $0 = cluster.ids.compactMap { cluster.pid($0) } }
                #expect(cluster.liveIDs == [1, 2, 3])
                throw Boom()
            }
        }
        let path = directory.withLock { $0 }
        #expect(!path.isEmpty)
        #expect(!FileManager.default.fileExists(atPath: path))
        #expect(pids.withLock { $0 }.count == 3)
        #expect(ChildProcess.livePids.isDisjoint(with: pids.withLock { $0 }))
    }

    @Test func waitForLeaderReturnsTheAgreedLeader() async throws {
        let fake = try FakeNode()
        let cluster = try Cluster(fake.options())
        defer { cluster.shutdown() }
        try cluster.startAll()
        let polls = Atomic<Int>(0)
        let servers = try cluster.ids.map { id in
            try TinyHTTPServer(port: cluster.member(id).httpPort) { _ in
                // Member 3 sees no leader for its first few answers, as during an election.
                let count = id == 3 ? polls.add(1, ordering: .relaxed).newValue : Int.max
                let leader = count < 3 ? "null" : "2"
                let role = id == 2 ? "leader" : "follower"
                return .json(
                    200,
                    #"{"id":\#(id),"role":"\#(role)","term":4,"leader":\#(leader),"commit_index":1,"applied_index":1,"last_index":1,"snapshot_index":0,"members":[1,2,3]}"#
                )
            }
        }
        defer { for server in servers { server.stop() } }
        #expect(try await cluster.waitForLeader(timeout: .seconds(20)) == 2)
        #expect(polls.load(ordering: .relaxed) >= 3)
    }

    @Test func waitForLeaderGivesUpWhenMembersDisagree() async throws {
        let fake = try FakeNode()
        let cluster = try Cluster(fake.options(size: 2))
        defer { cluster.shutdown() }
        try cluster.startAll()
        let servers = try cluster.ids.map { id in
            try TinyHTTPServer(port: cluster.member(id).httpPort) { _ in
                .json(
                    200,
                    #"{"id":\#(id),"role":"leader","term":4,"leader":\#(id),"commit_index":1,"applied_index":1,"last_index":1,"snapshot_index":0,"members":[1,2]}"#
                )
            }
        }
        defer { for server in servers { server.stop() } }
        let error = await #expect(throws: TestSupportError.self) {
            try await cluster.waitForLeader(timeout: .milliseconds(600))
        }
        #expect(error?.code == .timeout)
        #expect(error?.message.contains("member 1: leader") == true)
    }

    @Test func waitForLeaderNamesMembersThatAreDown() async throws {
        let fake = try FakeNode()
        let cluster = try Cluster(fake.options(size: 2))
        defer { cluster.shutdown() }
        try cluster.startAll()
        cluster.kill(1)
        cluster.pause(2)
        let error = await #expect(throws: TestSupportError.self) {
            try await cluster.waitForLeader(timeout: .milliseconds(300))
        }
        #expect(
            error?.message.contains("member 1 not live (killed by signal 9)") == true, "\(String(describing: error))")
        #expect(error?.message.contains("member 2 not live (paused)") == true)
    }

    @Test func joiningMemberGetsItsOwnProxies() throws {
        let fake = try FakeNode()
        let cluster = try Cluster(fake.options())
        defer { cluster.shutdown() }
        let id = try cluster.addJoiningMember()
        #expect(id == 4)
        let arguments = cluster.member(4).arguments
        #expect(arguments.contains("--join"))
        #expect(Self.flags(arguments, "--peer").count == 3)
        let inbound = try #require(cluster.proxy(from: 1, to: 4))
        #expect(inbound.targetPort == cluster.member(4).listenPort)
        #expect(cluster.peerAddressForMembership(4) == inbound.address)
        #expect(cluster.proxy(from: 4, to: 1)?.targetPort == cluster.member(1).listenPort)
    }
}
