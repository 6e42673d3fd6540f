import GallocyCodec
import GallocyRaft
import GallocyStateMachine
import GallocyStorage
import Logging
import NIOCore

/// The engine's version, printed by `gallocy --version`.
public enum GallocyVersion {
    public static let string = "0.1.0"
}
