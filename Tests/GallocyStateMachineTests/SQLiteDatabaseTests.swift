import CSQLite
import Testing

@testable import GallocyStateMachine

@Suite struct SQLiteDatabaseTests {
    @Test func bindingsRoundTripEveryType() throws {
        let db = try SQLiteDatabase()
        try db.exec("CREATE TABLE t (i INTEGER, u INTEGER, d REAL, s TEXT, b BLOB, e BLOB, n INTEGER)")
        let insert = try db.prepare("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?)")
        try insert.bind(Int64(-5), at: 1)
        try insert.bind(UInt64.max, at: 2)
        try insert.bind(2.5, at: 3)
        try insert.bind("héllo, 'world'", at: 4)
        try insert.bind([0, 1, 255] as [UInt8], at: 5)
        try insert.bind([] as [UInt8], at: 6)
        try insert.bindNull(at: 7)
        #expect(try insert.step() == false)
        insert.reset()

        let select = try db.prepare("SELECT i, u, d, s, b, e, n FROM t")
        #expect(try select.step())
        #expect(select.int64(at: 0) == -5)
        #expect(select.uint64(at: 1) == UInt64.max)
        #expect(select.double(at: 2) == 2.5)
        #expect(select.text(at: 3) == "héllo, 'world'")
        #expect(select.blob(at: 4) == [0, 1, 255])
        #expect(select.value(at: 5) == .blob([]))
        #expect(select.isNull(at: 6))
        #expect(select.optionalUInt64(at: 6) == nil)
        #expect(select.columnName(at: 3) == "s")
        #expect(try select.step() == false)
    }

    @Test func cachedStatementIsReusedAfterReset() throws {
        let db = try SQLiteDatabase()
        try db.exec("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
        let first = try db.cached("INSERT INTO t VALUES (?, ?)")
        let second = try db.cached("INSERT INTO t VALUES (?, ?)")
        #expect(first === second)
        for k in 1...3 {
            try db.run("INSERT INTO t VALUES (?, ?)", .integer(Int64(k)), .text("v\(k)"))
        }
        let values = try db.rows("SELECT v FROM t ORDER BY k", []) { $0.text(at: 0) }
        #expect(values == ["v1", "v2", "v3"])
    }

    @Test func errorsCarryTheSQLiteCodeAndMessage() throws {
        let db = try SQLiteDatabase()
        try db.exec("CREATE TABLE t (k INTEGER PRIMARY KEY)")
        try db.run("INSERT INTO t VALUES (1)")
        do {
            try db.run("INSERT INTO t VALUES (1)")
            Issue.record("a duplicate key was accepted")
        } catch {
            #expect(error.code == .sqlite)
            #expect(error.sqliteCode == SQLITE_CONSTRAINT | (6 << 8))  // SQLITE_CONSTRAINT_PRIMARYKEY
            #expect(error.message.contains("UNIQUE constraint failed"))
        }
        #expect(throws: StateMachineError.self) { try db.prepare("SELEC nonsense") }
        do {
            _ = try db.prepare("SELECT * FROM missing")
        } catch {
            #expect(error.sqliteCode == SQLITE_ERROR)
            #expect(error.message.contains("no such table: missing"))
        }
    }

    @Test func bindingAParameterThatDoesNotExistIsARangeError() throws {
        let db = try SQLiteDatabase()
        let statement = try db.prepare("SELECT ?")
        #expect(statement.parameterCount == 1)
        do {
            try statement.bind(Int64(1), at: 2)
            Issue.record("bound parameter 2 of 1")
        } catch {
            #expect(error.sqliteCode == SQLITE_RANGE)
        }
    }

    @Test func transactionRollsBackWhenTheBodyThrows() throws {
        let db = try SQLiteDatabase()
        try db.exec("CREATE TABLE t (k INTEGER PRIMARY KEY)")
        #expect(throws: TestFailure.self) {
            try db.transaction {
                try db.run("INSERT INTO t VALUES (1)")
                throw TestFailure("abort")
            }
        }
        #expect(!db.isInTransaction)
        try db.transaction { try db.run("INSERT INTO t VALUES (2)") }
        #expect(try db.rows("SELECT k FROM t", []) { $0.int64(at: 0) } == [2])
    }

    @Test func aNestedTransactionIsUndoneAloneInsideTheOuterOne() throws {
        let db = try SQLiteDatabase()
        try db.exec("CREATE TABLE t (v INTEGER)")
        try db.begin()
        try db.run("INSERT INTO t VALUES (1)")
        try db.begin()
        try db.run("INSERT INTO t VALUES (2)")
        try db.rollback()  // only the inner one
        #expect(db.isInTransaction)
        try db.begin()
        try db.run("INSERT INTO t VALUES (3)")
        try db.commit()  // releases the inner one into the outer
        #expect(db.isInTransaction)
        try db.commit()
        #expect(!db.isInTransaction)
        let values = try db.rows("SELECT v FROM t ORDER BY v", []) { $0.int64(at: 0) }
        #expect(values == [1, 3])
        // An outer rollback undoes what the inner ones committed into it.
        try db.begin()
        try db.begin()
        try db.run("INSERT INTO t VALUES (4)")
        try db.commit()
        try db.rollback()
        #expect(!db.isInTransaction)
        #expect(try db.rows("SELECT count(*) FROM t", []) { $0.int64(at: 0) } == [2])
        #expect(throws: StateMachineError.self) { try db.commit() }
    }

    @Test func serializeAndDeserializeKeepTheRows() throws {
        let db = try SQLiteDatabase()
        try db.exec("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'one'), (2, 'two');")
        let image = try db.serialize()
        let copy = try SQLiteDatabase()
        try copy.deserialize(image)
        #expect(try copy.rows("SELECT v FROM t ORDER BY k", []) { $0.text(at: 0) } == ["one", "two"])
        try copy.run("INSERT INTO t VALUES (3, 'three')")  // the restored image is writable and can grow
        #expect(try copy.firstRow("SELECT count(*) FROM t", []) { $0.int64(at: 0) } == 3)
    }
}
