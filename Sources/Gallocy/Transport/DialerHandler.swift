import GallocyRaft
import Logging
import NIOCore

/// The handler of a connection this member dialed to a peer: it runs the dialer's half of the
/// handshake, then tells the link to start writing messages. Nothing is expected from the peer
/// after the handshake; anything it sends then is a protocol error.
final class DialerHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum Phase {
        case awaitingChallenge
        case awaitingAccept(PeerHandshake.Challenge)
        case ready
        case failed
    }

    private let link: PeerLink
    private let generation: UInt64
    private let nonce = PeerHandshake.makeNonce()
    private var phase = Phase.awaitingChallenge
    private var reader = TransportFrameReader()
    private var timeout: Scheduled<Void>?
    /// Why this connection is being closed, reported to the link when it is.
    private var failure: String?

    init(link: PeerLink, generation: UInt64) {
        self.link = link
        self.generation = generation
    }

    private var transport: PeerTransport { link.transport }

    func channelActive(context: ChannelHandlerContext) {
        let hello = PeerHandshake.Hello(
            version: PeerHandshake.protocolVersion, clusterID: transport.clusterID, from: transport.configuration.id,
            to: link.id, hasSecret: transport.key != nil, nonce: nonce)
        context.writeAndFlush(wrapOutboundOut(TransportFrame.encode(.hello, PeerHandshake.encode(hello))), promise: nil)
        timeout = context.eventLoop.assumeIsolated().scheduleTask(in: transport.configuration.handshakeTimeout) {
            self.fail(context: context, "handshake timed out", tell: false)
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        timeout?.cancel()
        link.connectionClosed(
            generation: generation,
            reason: failure ?? (isReady ? "connection closed" : "peer closed the connection during the handshake"))
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if isReady && context.channel.isWritable { link.drain() }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(context: context, "\(error)", tell: false)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        if case .failed = phase { return }
        reader.append(&bytes)
        do {
            while let frame = try reader.next(maxLength: TransportFrame.maxHandshakeLength) {
                handle(frame, context: context)
                if case .failed = phase { return }
            }
        } catch {
            fail(context: context, "bad frame from peer: \(error)", tell: false)
        }
    }

    private var isReady: Bool {
        if case .ready = phase { return true }
        return false
    }

    private func handle(_ frame: TransportFrame, context: ChannelHandlerContext) {
        let me = transport.configuration.id
        switch (phase, frame.kind) {
        case (.awaitingChallenge, .challenge):
            let challenge: PeerHandshake.Challenge
            do { challenge = try PeerHandshake.decodeChallenge(frame.payload) } catch {
                return fail(context: context, "bad challenge: \(error)", tell: true)
            }
            guard challenge.acceptorID == link.id else {
                return fail(
                    context: context, "the member at this address is \(challenge.acceptorID), not \(link.id)",
                    tell: true)
            }
            let ours = transport.clusterID
            guard ours == 0 || challenge.clusterID == 0 || ours == challenge.clusterID else {
                return fail(context: context, "peer is in cluster \(challenge.clusterID), not \(ours)", tell: true)
            }
            var proof: [UInt8] = []
            switch (transport.key, challenge.hasSecret) {
            case (nil, true):
                return fail(context: context, "peer requires a shared secret and this member has none", tell: true)
            case (.some, false):
                return fail(context: context, "peer has no shared secret and this member requires one", tell: true)
            case (let key?, true):
                proof = PeerHandshake.dialerProof(
                    secret: key, acceptorNonce: challenge.nonce, dialer: me, acceptor: link.id, dialerNonce: nonce)
            case (nil, false):
                break
            }
            phase = .awaitingAccept(challenge)
            context.writeAndFlush(wrapOutboundOut(TransportFrame.encode(.auth, proof)), promise: nil)

        case (.awaitingAccept(let challenge), .accept):
            if let key = transport.key {
                let expected = PeerHandshake.acceptorProofInput(
                    dialerNonce: nonce, dialer: me, acceptor: link.id, acceptorNonce: challenge.nonce)
                guard PeerHandshake.isValid(proof: frame.payload, expected: expected, secret: key) else {
                    return fail(context: context, "peer failed to prove it holds the shared secret", tell: true)
                }
            } else if frame.payload.readableBytes != 0 {
                return fail(context: context, "unexpected proof from a peer without a secret", tell: true)
            }
            phase = .ready
            timeout?.cancel()
            timeout = nil
            link.handshakeCompleted(context.channel, generation: generation)

        case (_, .refuse):
            let reason = frame.payload.getString(
                at: frame.payload.readerIndex, length: min(frame.payload.readableBytes, 512))
            fail(context: context, "refused by peer: \(reason ?? "no reason given")", tell: false)

        default:
            fail(context: context, "unexpected \(frame.kind) frame from peer", tell: !isReady)
        }
    }

    /// Closes the connection, recording `reason` for the link's log; during the handshake the
    /// peer is told why with a refuse frame when `tell` is set.
    private func fail(context: ChannelHandlerContext, _ reason: String, tell: Bool) {
        if case .failed = phase { return }
        let wasReady = isReady
        phase = .failed
        failure = reason
        timeout?.cancel()
        if tell && !wasReady {
            context.writeAndFlush(wrapOutboundOut(TransportFrame.encode(.refuse, Array(reason.utf8.prefix(256)))))
                .assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        } else {
            context.close(promise: nil)
        }
    }
}
