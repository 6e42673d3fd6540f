import Testing

@testable import GallocyStateMachine

@Suite struct ReadOnlyQueryTests {
    @Test func selectReturnsColumnNamesAndTypedRows() throws {
        let replica = try Replica()
        let address = try replica.allocate(100)
        let result = try replica.table.query("SELECT address, size, member FROM allocations ORDER BY address;  -- trailing comment")
        #expect(result.columns == ["address", "size", "member"])
        #expect(result.rows == [[.unsigned(address), .integer(100), .integer(1)]])
        let typed = try replica.table.query("SELECT 1.5, 'x', x'00ff', NULL")
        #expect(typed.rows == [[.real(1.5), .text("x"), .blob([0, 255]), .null]])
    }

    @Test func describingPragmasAndRecursiveQueriesAreAllowed() throws {
        let table = try PageTable()
        let info = try table.query("PRAGMA table_info(pages)")
        #expect(info.rows.count == 10)
        let version = try table.query("PRAGMA user_version")
        #expect(version.rows == [[.integer(Int64(PageTable.schemaVersion))]])
        let counted = try table.query("WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 5) SELECT sum(x) FROM n")
        #expect(counted.rows == [[.integer(15)]])
    }

    @Test func tableValuedPragmaFunctionsAreAllowedAndLoadExtensionIsNot() throws {
        let table = try PageTable()
        let columns = try table.query("SELECT name FROM pragma_table_info('locks') ORDER BY cid")
        #expect(columns.rows.map { $0[0] } == ["company", "name", "holder", "epoch", "expires_at", "granted_index"].map { .text($0) })
        do {
            _ = try table.query("SELECT load_extension('/tmp/evil.so')")
            Issue.record("load_extension was allowed")
        } catch {
            #expect(error.code == .notReadOnly)
        }
    }

    @Test(arguments: [
        "INSERT INTO roots VALUES (0, 'x', 1, 1)",
        "DELETE FROM allocations",
        "UPDATE pages SET blocks = 0",
        "DROP TABLE pages",
        "CREATE TABLE evil (x)",
        "CREATE TEMP TABLE evil (x)",
        "PRAGMA user_version = 7",
        "PRAGMA query_only = 0",
        "PRAGMA journal_mode = DELETE",
        "ATTACH DATABASE '/tmp/gallocy-evil.db' AS evil",
        "BEGIN",
        "SAVEPOINT s",
        "VACUUM",
        "REPLACE INTO settings VALUES (0, 0, 0, 0, 0, 0)",
    ])
    func writesAreRefused(sql: String) throws {
        let replica = try Replica()
        _ = try replica.allocate(64)
        let before = try replica.table.canonicalDump()
        do {
            _ = try replica.table.query(sql)
            Issue.record("`\(sql)` was accepted")
        } catch {
            #expect(error.code == .notReadOnly, "\(sql): \(error)")
        }
        #expect(try replica.table.canonicalDump() == before)
        // The page table still applies commands afterwards: no transaction or pragma was left behind.
        _ = try replica.allocate(64)
    }

    @Test func aRefusalNamesWhatWasRefused() throws {
        let table = try PageTable()
        do {
            _ = try table.query("DELETE FROM locks")
            Issue.record("DELETE was accepted")
        } catch {
            #expect(error.message.contains("DELETE (locks)"), "\(error)")
        }
    }

    @Test func badSQLIsAClearError() throws {
        let table = try PageTable()
        do {
            _ = try table.query("SELECT * FROM nowhere")
            Issue.record("accepted a missing table")
        } catch {
            #expect(error.code == .badQuery)
            #expect(error.message.contains("no such table: nowhere"))
        }
        #expect(throws: StateMachineError.self) { try table.query("SELEKT 1") }
        #expect(throws: StateMachineError.self) { try table.query("   -- only a comment") }
    }

    @Test func twoStatementsAreRefused() throws {
        let table = try PageTable()
        do {
            _ = try table.query("SELECT 1; DELETE FROM pages")
            Issue.record("accepted two statements")
        } catch {
            #expect(error.code == .badQuery || error.code == .notReadOnly)
        }
    }

    @Test func maxRowsTruncates() throws {
        let table = try PageTable()
        let result = try table.query("WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 10) SELECT x FROM n", maxRows: 3)
        #expect(result.rows.count == 3)
        #expect(result.truncated)
    }
}
