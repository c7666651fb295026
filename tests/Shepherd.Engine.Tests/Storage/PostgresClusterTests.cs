using Npgsql;
using Shepherd.Testing;

namespace Shepherd.Engine.Tests.Storage;

public sealed class PostgresClusterTests : IAsyncLifetime
{
    private string _connectionString = "";

    public async ValueTask InitializeAsync()
    {
        if (PostgresCluster.SkipReason is { } reason)
        {
            Assert.Skip(reason);
        }

        _connectionString = await PostgresCluster.CreateDatabaseAsync(TestContext.Current.CancellationToken);
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;

    [Fact]
    public async Task CreateDatabase_TwiceGivesTwoDistinctEmptyDatabasesOnPostgres15OrLater()
    {
        var ct = TestContext.Current.CancellationToken;
        var other = await PostgresCluster.CreateDatabaseAsync(ct);

        var first = await DescribeAsync(_connectionString, ct);
        var second = await DescribeAsync(other, ct);

        Assert.NotEqual(first.Database, second.Database);
        Assert.Equal(new NpgsqlConnectionStringBuilder(_connectionString).Database, first.Database);
        Assert.Equal(new NpgsqlConnectionStringBuilder(other).Database, second.Database);
        Assert.All([first, second], database =>
        {
            Assert.StartsWith("PostgreSQL ", database.Version, StringComparison.Ordinal);
            Assert.True(database.VersionNumber >= 150000, database.Version);
            Assert.Equal(0, database.Tables);
        });
    }

    [Fact]
    public async Task CreatedDatabase_IsWritable()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var connection = new NpgsqlConnection(_connectionString);
        await connection.OpenAsync(ct);

        await using (var create = new NpgsqlCommand(
            "CREATE TABLE item (id bigint PRIMARY KEY, body jsonb NOT NULL); INSERT INTO item VALUES (1, '{\"a\": 1}'), (2, '{\"a\": 2}')",
            connection))
        {
            await create.ExecuteNonQueryAsync(ct);
        }

        await using var sum = new NpgsqlCommand("SELECT sum((body->>'a')::int) FROM item", connection);
        Assert.Equal(3L, await sum.ExecuteScalarAsync(ct));
    }

    [Fact]
    public async Task CreateDatabase_ConcurrentCallersShareOneServer()
    {
        var ct = TestContext.Current.CancellationToken;
        var created = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => PostgresCluster.CreateDatabaseAsync(ct)));

        var builders = created.Select(connectionString => new NpgsqlConnectionStringBuilder(connectionString)).ToList();
        Assert.Single(builders.Select(builder => (builder.Host, builder.Port)).Distinct());
        Assert.Equal(builders.Count, builders.Select(builder => builder.Database).Distinct().Count());
    }

    private static async Task<(string Database, string Version, int VersionNumber, long Tables)> DescribeAsync(
        string connectionString, CancellationToken ct)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync(ct);
        await using var command = new NpgsqlCommand(
            """
            SELECT current_database(), version(), current_setting('server_version_num')::int,
                   (SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public')
            """,
            connection);
        await using var reader = await command.ExecuteReaderAsync(ct);
        Assert.True(await reader.ReadAsync(ct));
        return (reader.GetString(0), reader.GetString(1), reader.GetInt32(2), reader.GetInt64(3));
    }
}
