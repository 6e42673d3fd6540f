import Gallocy
import GallocyCodec
import GallocyRaft
import NIOCore
import Testing

/// Handshake checks, shared-secret authentication, and garbage on the listen port.
@Suite("PeerTransport handshake and hostile input")
struct TransportSecurityTests {
    @Test func garbageOnTheListenPortClosesOnlyThatConnection() async throws {
        let inboxB = TransportInbox()
        let a = try await startTransport(id: 1, inbox: TransportInbox())
        let b = try await startTransport(id: 2, inbox: inboxB)
        a.setPeer(id: 2, address: try listenAddress(of: b))
        a.send(probeMessage(from: 1, to: 2, index: 1))
        #expect(await transportWait { inboxB.count == 1 })

        // Not our protocol at all: the length field reads as ~540 MB.
        let http = try await RawPeerSocket.connect(to: try listenAddress(of: b))
        try await http.write(Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        #expect(await transportWait { http.isClosed })

        // A frame of a kind that does not exist.
        let badKind = try await RawPeerSocket.connect(to: try listenAddress(of: b))
        try await badKind.write(rawTransportFrame(kind: 99, [1, 2, 3]))
        #expect(await transportWait { badKind.isClosed })

        // A hello with the wrong magic.
        let badHello = try await RawPeerSocket.connect(to: try listenAddress(of: b))
        try await badHello.write(
            rawTransportFrame(kind: TransportFrame.Kind.hello.rawValue, Array(repeating: 0x41, count: 61)))
        #expect(await transportWait { badHello.isClosed })

        // A good handshake, then a message whose checksum does not match.
        var corrupt = MessageCodec.encode(probeMessage(from: 7, to: 2, index: 5))
        corrupt[3] ^= 0xFF
        let badChecksum = try await RawPeerSocket.connect(to: try listenAddress(of: b))
        try await badChecksum.write(
            rawTransportHandshake(from: 7, to: 2)
                + rawTransportFrame(kind: TransportFrame.Kind.message.rawValue, corrupt))
        #expect(await transportWait { badChecksum.isClosed })

        // A good handshake, then a length far beyond the message limit.
        let badLength = try await RawPeerSocket.connect(to: try listenAddress(of: b))
        try await badLength.write(rawTransportHandshake(from: 7, to: 2) + [0xFF, 0xFF, 0xFF, 0xFF, 6])
        #expect(await transportWait { badLength.isClosed })

        // A good handshake, then a message that claims another sender.
        let spoofed = try await RawPeerSocket.connect(to: try listenAddress(of: b))
        try await spoofed.write(
            rawTransportHandshake(from: 7, to: 2)
                + rawTransportFrame(
                    kind: TransportFrame.Kind.message.rawValue, MessageCodec.encode(probeMessage(from: 1, to: 2))))
        #expect(await transportWait { spoofed.isClosed })

        let metrics = b.metrics()
        #expect(metrics.refusedConnections == 3)
        #expect(metrics.protocolErrors == 3)
        #expect(inboxB.count == 1)

        // The existing connection was not disturbed, and new peers still get in.
        a.send(probeMessage(from: 1, to: 2, index: 2))
        #expect(await transportWait { inboxB.count == 2 })
        #expect(a.metrics().peers[2]?.connectionsEstablished == 1)
        let c = try await startTransport(id: 3, inbox: TransportInbox())
        c.setPeer(id: 2, address: try listenAddress(of: b))
        c.send(probeMessage(from: 3, to: 2, index: 3))
        #expect(await transportWait { inboxB.count == 3 })

        for socket in [http, badKind, badHello, badChecksum, badLength, spoofed] { await socket.close() }
        await a.shutdown()
        await b.shutdown()
        await c.shutdown()
    }

    @Test func silentConnectionIsClosedAfterTheHandshakeTimeout() async throws {
        let b = try await startTransport(id: 2, inbox: TransportInbox()) { $0.handshakeTimeout = .milliseconds(200) }
        let silent = try await RawPeerSocket.connect(to: try listenAddress(of: b))
        #expect(await transportWait { silent.isClosed })
        #expect(b.metrics().refusedConnections == 1)
        await silent.close()
        await b.shutdown()
    }

    @Test func wrongClusterIDIsRefused() async throws {
        let inboxB = TransportInbox()
        let inboxC = TransportInbox()
        let a = try await startTransport(id: 1, clusterID: 11, inbox: TransportInbox())
        let b = try await startTransport(id: 2, clusterID: 22, inbox: inboxB)
        let c = try await startTransport(id: 3, clusterID: 0, inbox: inboxC)
        a.setPeer(id: 2, address: try listenAddress(of: b))
        a.setPeer(id: 3, address: try listenAddress(of: c))
        a.send(probeMessage(from: 1, to: 2))
        a.send(probeMessage(from: 1, to: 3))
        // Cluster id 0 (not yet known) is accepted; a different known id is refused.
        #expect(await transportWait { inboxC.count == 1 })
        #expect(await transportWait { b.metrics().refusedConnections >= 1 })
        #expect(inboxB.count == 0)
        #expect(a.metrics().peers[2]?.connectionsEstablished == 0)

        // Once both agree, the redial gets through and the queued message is delivered.
        b.setClusterID(11)
        #expect(await transportWait { inboxB.count == 1 })
        await a.shutdown()
        await b.shutdown()
        await c.shutdown()
    }

    @Test func wrongToIDIsRefused() async throws {
        let inboxB = TransportInbox()
        let a = try await startTransport(id: 1, inbox: TransportInbox())
        let b = try await startTransport(id: 2, inbox: inboxB)
        // A thinks member 3 lives at B's address.
        a.setPeer(id: 3, address: try listenAddress(of: b))
        a.send(probeMessage(from: 1, to: 3))
        #expect(await transportWait { b.metrics().refusedConnections >= 1 })
        #expect(inboxB.count == 0)
        #expect(a.metrics().peers[3]?.connectionsEstablished == 0)
        await a.shutdown()
        await b.shutdown()
    }

    @Test func sameSecretConnectsAndCarriesALargeMessage() async throws {
        let inboxA = TransportInbox()
        let inboxB = TransportInbox()
        let a = try await startTransport(id: 1, secret: "correct horse", inbox: inboxA)
        let b = try await startTransport(id: 2, secret: "correct horse", inbox: inboxB)
        #expect(a.authenticatesPeers && b.authenticatesPeers)
        a.setPeer(id: 2, address: try listenAddress(of: b))
        b.setPeer(id: 1, address: try listenAddress(of: a))
        let data = (0..<(4 << 20)).map { UInt8(truncatingIfNeeded: $0 >> 3) }
        let chunk = Message(
            type: .snapshot, from: 1, to: 2, term: 2,
            snapshot: SnapshotChunk(
                metadata: SnapshotMetadata(index: 9, term: 2), offset: 0, totalSize: UInt64(data.count), data: data,
                done: true))
        a.send(chunk)
        b.send(probeMessage(from: 2, to: 1, index: 4))
        #expect(await transportWait(timeout: .seconds(20)) { inboxB.count == 1 && inboxA.count == 1 })
        #expect(inboxB.all.first == chunk)
        #expect(inboxA.all.first?.index == 4)
        await a.shutdown()
        await b.shutdown()
    }

    @Test(arguments: [("alpha", "beta"), ("alpha", nil), (nil, "beta")] as [(String?, String?)])
    func mismatchedSecretsAreRefusedBothWays(secretA: String?, secretB: String?) async throws {
        let inboxA = TransportInbox()
        let inboxB = TransportInbox()
        let a = try await startTransport(id: 1, secret: secretA, inbox: inboxA)
        let b = try await startTransport(id: 2, secret: secretB, inbox: inboxB)
        a.setPeer(id: 2, address: try listenAddress(of: b))
        b.setPeer(id: 1, address: try listenAddress(of: a))
        a.send(probeMessage(from: 1, to: 2))
        b.send(probeMessage(from: 2, to: 1))
        #expect(await transportWait { a.metrics().refusedConnections >= 1 && b.metrics().refusedConnections >= 1 })
        #expect(inboxA.count == 0 && inboxB.count == 0)
        #expect(a.metrics().peers[2]?.connectionsEstablished == 0)
        #expect(b.metrics().peers[1]?.connectionsEstablished == 0)
        await a.shutdown()
        await b.shutdown()
    }
}
