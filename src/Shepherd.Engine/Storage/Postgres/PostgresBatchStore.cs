using System.Data.Common;
using Npgsql;
using Shepherd.Engine.Model;

namespace Shepherd.Engine.Storage;

/// <summary>
/// The shared store: one PostgreSQL database behind any number of nodes. Items are claimed in
/// chunks with <c>FOR UPDATE SKIP LOCKED</c>, so no item is leased by two nodes at once; every
/// lease names its node, and a node that stops beating loses its leases to the others. Commits
/// are set-based (one statement per kind of outcome), files live in the database in chunks, and
/// nodes wake each other with <c>NOTIFY</c> when batches change.
/// </summary>
public sealed partial class PostgresBatchStore : IBatchStore, IClusterStore
{
    private readonly PostgresStoreOptions _options;
    private readonly TimeProvider _time;
    private readonly NpgsqlDataSource _data;
    private readonly string _where;
    private readonly CancellationTokenSource _stopping = new();
    private Task? _listening;
    private bool _disposed;

    /// <summary>Creates a store over the database the options name; call <see cref="InitializeAsync"/> before use.</summary>
    public PostgresBatchStore(PostgresStoreOptions options, TimeProvider timeProvider)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(timeProvider);
        _options = options.Validated();
        _time = timeProvider;
        var builder = new NpgsqlConnectionStringBuilder(_options.NpgsqlConnectionString());
        builder.ApplicationName ??= "shepherd " + _options.NodeName;
        _where = $"PostgreSQL at {builder.Host}:{builder.Port}/{builder.Database}";
        _data = NpgsqlDataSource.Create(builder.ConnectionString);
    }

    /// <inheritdoc />
    public async Task InitializeAsync(CancellationToken cancellationToken)
    {
        await InTransactionAsync(async (connection, tx) =>
        {
            await ExecuteAsync(connection, tx, "SELECT pg_advisory_xact_lock(@lock)", cancellationToken, ("lock", MigrationLock));
            await ExecuteAsync(connection, tx, "CREATE TABLE IF NOT EXISTS shepherd_schema (version integer NOT NULL)", cancellationToken);
            var version = Convert.ToInt32(await ScalarAsync(connection, tx, "SELECT COALESCE(MAX(version), 0) FROM shepherd_schema", cancellationToken), System.Globalization.CultureInfo.InvariantCulture);
            if (version > SchemaVersion)
            {
                throw new StoreException(
                    $"The database {_where} was written by a newer Shepherd (schema {version}; this version knows {SchemaVersion}). Use that version, or another database.");
            }

            foreach (var migration in Migrations.Skip(version))
            {
                await ExecuteAsync(connection, tx, migration, cancellationToken);
            }

            if (version < SchemaVersion)
            {
                await ExecuteAsync(connection, tx, "DELETE FROM shepherd_schema; INSERT INTO shepherd_schema (version) VALUES (@version)", cancellationToken, ("version", SchemaVersion));
            }

            return 0;
        }, cancellationToken);

        _listening ??= ListenAsync(_stopping.Token);
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        await _stopping.CancelAsync();
        if (_listening is not null)
        {
            await _listening;
        }

        await _data.DisposeAsync();
        _stopping.Dispose();
    }

    /// <summary>
    /// A page by insertion order, newest first unless asked oldest first: <c>after</c> continues in
    /// the listing's order, <c>before</c> goes back to newer ones (read oldest first, then turned around by <see cref="StoreRows.ToPage{T}"/>).
    /// </summary>
    private static string PageQuery(string columns, string table, string filter, PageRequest page) =>
        page.Before is not null
            ? $"SELECT {columns} FROM {table} WHERE {filter} AND seq > (SELECT seq FROM {table} WHERE id = @before) ORDER BY seq LIMIT @limit"
            : page.OldestFirst
                ? $"SELECT {columns} FROM {table} WHERE {filter} AND (@after::text IS NULL OR seq > (SELECT seq FROM {table} WHERE id = @after)) ORDER BY seq LIMIT @limit"
                : $"SELECT {columns} FROM {table} WHERE {filter} AND (@after::text IS NULL OR seq < (SELECT seq FROM {table} WHERE id = @after)) ORDER BY seq DESC LIMIT @limit";

    private async Task DeleteItemsAsync(string batchId, string? alsoSql, CancellationToken cancellationToken)
    {
        // Small transactions, so a large rejected batch never holds its rows for long.
        while (await InTransactionAsync(async (connection, tx) =>
        {
            await ExecuteAsync(connection, tx, StoreSql.DeleteChunkOfAnswers, cancellationToken, ("batch", batchId));
            return await ExecuteAsync(connection, tx, StoreSql.DeleteChunkOfItems, cancellationToken, ("batch", batchId));
        }, cancellationToken) > 0)
        {
        }

        if (alsoSql is not null)
        {
            await WithConnectionAsync(connection => ExecuteAsync(connection, null, alsoSql, cancellationToken, ("batch", batchId)), cancellationToken);
        }
    }

    private long Now() => _time.GetUtcNow().ToUnixTimeMilliseconds();

    private async Task<BatchRecord?> FirstBatchAsync(string sql, CancellationToken cancellationToken, params (string Name, object? Value)[] parameters) =>
        (await QueryAsync(sql, StoreRows.ReadBatch, cancellationToken, parameters)).FirstOrDefault();

    private Task<List<T>> QueryAsync<T>(string sql, Func<DbDataReader, T> read, CancellationToken cancellationToken, params (string Name, object? Value)[] parameters) =>
        WithConnectionAsync(connection => QueryAsync(connection, null, sql, read, cancellationToken, parameters), cancellationToken);

    private Task<object?> ScalarAsync(string sql, CancellationToken cancellationToken, params (string Name, object? Value)[] parameters) =>
        WithConnectionAsync(connection => ScalarAsync(connection, null, sql, cancellationToken, parameters), cancellationToken);

    private static async Task<List<T>> QueryAsync<T>(NpgsqlConnection connection, NpgsqlTransaction? tx, string sql, Func<DbDataReader, T> read, CancellationToken cancellationToken, params (string Name, object? Value)[] parameters)
    {
        await using var command = Command(connection, tx, sql, parameters);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var rows = new List<T>();
        while (await reader.ReadAsync(cancellationToken))
        {
            rows.Add(read(reader));
        }

        return rows;
    }

    private static async Task<int> ExecuteAsync(NpgsqlConnection connection, NpgsqlTransaction? tx, string sql, CancellationToken cancellationToken, params (string Name, object? Value)[] parameters)
    {
        await using var command = Command(connection, tx, sql, parameters);
        return await command.ExecuteNonQueryAsync(cancellationToken);
    }

    private static async Task<object?> ScalarAsync(NpgsqlConnection connection, NpgsqlTransaction? tx, string sql, CancellationToken cancellationToken, params (string Name, object? Value)[] parameters)
    {
        await using var command = Command(connection, tx, sql, parameters);
        var value = await command.ExecuteScalarAsync(cancellationToken);
        return value is DBNull ? null : value;
    }

    private static NpgsqlCommand Command(NpgsqlConnection connection, NpgsqlTransaction? tx, string sql, params (string Name, object? Value)[] parameters)
    {
        var command = new NpgsqlCommand(sql, connection, tx);
        foreach (var (name, value) in parameters)
        {
            command.Parameters.Add(new NpgsqlParameter(name, value ?? DBNull.Value));
        }

        return command;
    }

    private async Task<T> WithConnectionAsync<T>(Func<NpgsqlConnection, Task<T>> work, CancellationToken cancellationToken)
    {
        try
        {
            await using var connection = await _data.OpenConnectionAsync(cancellationToken);
            return await work(connection);
        }
        catch (NpgsqlException ex) when (!cancellationToken.IsCancellationRequested)
        {
            if (ex is not PostgresException { SqlState: var state } || state.StartsWith("08", StringComparison.Ordinal) || state.StartsWith("57P", StringComparison.Ordinal))
            {
                // The connection failed, or the server ended it: pooled ones may be dead too, so
                // the next call opens fresh ones instead of failing on each of them in turn.
                _data.Clear();
            }

            throw Failed(ex);
        }
    }

    private Task<T> InTransactionAsync<T>(Func<NpgsqlConnection, NpgsqlTransaction, Task<T>> work, CancellationToken cancellationToken) =>
        WithConnectionAsync(async connection =>
        {
            await using var tx = await connection.BeginTransactionAsync(cancellationToken);
            var result = await work(connection, tx);
            await tx.CommitAsync(cancellationToken);
            return result;
        }, cancellationToken);

    private StoreException Failed(NpgsqlException ex) =>
        new($"The database {_where} could not be used: {ex.Message}", ex);
}
