import CLMDB

/// A named database inside an `LMDBEnvironment` (an `MDB_dbi` handle). Handles are opened once,
/// by `LMDBEnvironment.openDatabase(_:create:)`, and stay valid for the life of the environment.
package struct LMDBDatabase: Sendable, Hashable {
    package let handle: MDB_dbi
    package let name: String
}
