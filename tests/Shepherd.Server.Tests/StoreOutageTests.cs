using Npgsql;
using Shepherd.Engine.Storage;
using Shepherd.Simulator;
using Shepherd.Testing;

namespace Shepherd.Server.Tests;

/// <summary>A shared store that goes away for a while: the server stays up, says it is not ready, and finishes its batches when the store is back.</summary>
public sealed class StoreOutageTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task WhileTheDatabaseRefusesConnections_ReadyzSaysSo_AndTheBatchFinishesAfterwards()
    {
        if (PostgresCluster.SkipReason is { } reason)
        {
            Assert.Skip(reason);
        }

        var database = await PostgresCluster.CreateDatabaseAsync(Ct);
        var name = new NpgsqlConnectionStringBuilder(database).Database!;
        await using var server = await RunningServer.StartAsync(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(50) },
            sharedStore: new PostgresStoreOptions { ConnectionString = database, NodeName = "outage-node" });
        using var anonymous = server.Client(null);
        var requests = string.Join(",", Enumerable.Range(0, 100).Select(i => $$"""{"custom_id":"q{{i}}","prompt":"question {{i}}"}"""));
        var (_, created) = await server.PostAsync("/v1/batches", $$"""{"model":"gpt-4o-mini","requests":[{{requests}}]}""");
        var id = created.GetProperty("id").GetString()!;
        await server.WaitForAsync($"/v1/batches/{id}", b => b.GetProperty("request_counts").GetProperty("completed").GetInt64() >= 10);

        await AdministerAsync($"ALTER DATABASE {name} ALLOW_CONNECTIONS false", $"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'");
        var notReady = await Poll.UntilAsync(async () => await anonymous.GetAsync("/readyz", Ct),
            response => response.StatusCode == System.Net.HttpStatusCode.ServiceUnavailable, TimeSpan.FromSeconds(30), Ct);
        Assert.StartsWith("not ready: the store does not answer", await notReady.Content.ReadAsStringAsync(Ct), StringComparison.Ordinal);
        Assert.Equal("ok", await anonymous.GetStringAsync("/healthz", Ct));

        await AdministerAsync($"ALTER DATABASE {name} ALLOW_CONNECTIONS true");
        var ended = await server.WaitForEndAsync(id);

        Assert.Equal("completed", ended.GetProperty("status").GetString());
        Assert.Equal(100, ended.GetProperty("request_counts").GetProperty("completed").GetInt64());
        Assert.Equal(100, server.Simulator.Provider.ExecutedCounts().Count);
        await Poll.UntilAsync(async () => await anonymous.GetStringAsync("/readyz", Ct) == "ready", TimeSpan.FromSeconds(30), Ct);
    }

    [Fact]
    public async Task AReadOnlyStore_RefusesNewWorkWith503_AndKeepsWhatItHolds()
    {
        if (PostgresCluster.SkipReason is { } reason)
        {
            Assert.Skip(reason);
        }

        var database = await PostgresCluster.CreateDatabaseAsync(Ct);
        var name = new NpgsqlConnectionStringBuilder(database).Database!;
        await using var server = await RunningServer.StartAsync(sharedStore: new PostgresStoreOptions { ConnectionString = database, NodeName = "read-only-node" });
        var (_, created) = await server.PostAsync("/v1/batches", """{"model":"gpt-4o-mini","requests":[{"custom_id":"a","prompt":"hi"}]}""");
        var id = created.GetProperty("id").GetString()!;
        var ended = await server.WaitForEndAsync(id);

        await AdministerAsync($"ALTER DATABASE {name} SET default_transaction_read_only = on", $"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'");
        var (refused, refusal) = await Poll.UntilAsync(() => server.PostAsync("/v1/batches", """{"model":"gpt-4o-mini","requests":[{"custom_id":"b","prompt":"hi"}]}"""),
            answer => answer.Status != 200, TimeSpan.FromSeconds(30), Ct);
        var (read, kept) = await server.GetAsync($"/v1/batches/{id}");

        Assert.Equal(503, refused);
        Assert.Equal("store_unavailable", refusal.GetProperty("error").GetProperty("code").GetString());
        Assert.Contains("nothing was changed", refusal.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.Equal(200, read);
        Assert.Equal(ended.GetProperty("output_file_id").GetString(), kept.GetProperty("output_file_id").GetString());
        var (_, list) = await server.GetAsync("/v1/batches");
        Assert.Equal([id], list.GetProperty("data").EnumerateArray().Select(b => b.GetProperty("id").GetString()));

        await AdministerAsync($"ALTER DATABASE {name} SET default_transaction_read_only = off", $"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'");
        var (again, _) = await Poll.UntilAsync(() => server.PostAsync("/v1/batches", """{"model":"gpt-4o-mini","requests":[{"custom_id":"c","prompt":"hi"}]}"""),
            answer => answer.Status == 200, TimeSpan.FromSeconds(30), Ct);
        Assert.Equal(200, again);
    }

    private static async Task AdministerAsync(params string[] statements)
    {
        await using var connection = new NpgsqlConnection(await PostgresCluster.ServerConnectionStringAsync(Ct));
        await connection.OpenAsync(Ct);
        foreach (var sql in statements)
        {
            await using var command = new NpgsqlCommand(sql, connection);
            await command.ExecuteNonQueryAsync(Ct);
        }
    }
}
