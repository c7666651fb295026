using Shepherd.Engine.Storage;
using Shepherd.Simulator;
using Shepherd.Testing;

namespace Shepherd.Server.Tests;

/// <summary><c>GET /v1/batches/{id}?wait=</c>: a look held until the batch ends.</summary>
public sealed class LongPollTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task AHeldLook_IsAnsweredWithTheEndedBatch_OnceTheBatchEnds()
    {
        await using var server = await RunningServer.StartAsync(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(1500) });
        var (_, created) = await server.PostAsync("/v1/batches", """{"model":"gpt-4o-mini","requests":[{"custom_id":"only","prompt":"p"}]}""");
        var id = created.GetProperty("id").GetString()!;

        var held = server.GetAsync($"/v1/batches/{id}?wait=60");
        var (shortStatus, shortLook) = await server.GetAsync($"/v1/batches/{id}?wait=0.3");
        var (status, ended) = await held.WaitAsync(Patience, Ct);

        // The short look was held its 0.3 s and answered with the batch still running; the long one
        // was held until the end, with the result files written.
        Assert.Equal((200, "in_progress"), (shortStatus, shortLook.GetProperty("status").GetString()));
        Assert.Equal((200, "completed"), (status, ended.GetProperty("status").GetString()));
        Assert.Equal(1, ended.GetProperty("request_counts").GetProperty("completed").GetInt64());
        Assert.StartsWith("file-", ended.GetProperty("output_file_id").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task AHeldLook_AtAnotherTenantsBatch_IsNotFound_AndABadWaitIsRefused()
    {
        await using var server = await RunningServer.StartAsync(new SimulatorOptions { Latency = TimeSpan.FromSeconds(5) });
        var (_, created) = await server.PostAsync("/v1/batches", """{"model":"gpt-4o-mini","requests":[{"custom_id":"only","prompt":"p"}]}""");
        var id = created.GetProperty("id").GetString()!;
        using var other = server.Client(RunningServer.OtherKey);

        var (foreign, _) = await RunningServer.SendAsync(other, HttpMethod.Get, $"/v1/batches/{id}?wait=60").WaitAsync(Patience, Ct);
        var (bad, refusal) = await server.GetAsync($"/v1/batches/{id}?wait=soon");

        Assert.Equal(404, foreign);
        Assert.Equal((400, "wait"), (bad, refusal.GetProperty("error").GetProperty("param").GetString()));
        await server.PostAsync($"/v1/batches/{id}/cancel");
    }

    [Fact]
    public async Task OnNodesSharingAStore_ALookHeldByOneNode_IsAnsweredWhenTheBatchEnds()
    {
        if (PostgresCluster.SkipReason is { } reason)
        {
            Assert.Skip(reason);
        }

        var database = await PostgresCluster.CreateDatabaseAsync(Ct);
        var slow = new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(1500) };
        await using var first = await RunningServer.StartAsync(slow, sharedStore: new PostgresStoreOptions { ConnectionString = database, NodeName = "node-a" });
        await using var second = await RunningServer.StartAsync(slow, sharedStore: new PostgresStoreOptions { ConnectionString = database, NodeName = "node-b" });
        var (_, created) = await first.PostAsync("/v1/batches", """{"model":"gpt-4o-mini","requests":[{"custom_id":"only","prompt":"p"}]}""");
        var id = created.GetProperty("id").GetString()!;

        // Whichever node sends the request and writes the files, both answer their held looks.
        var onFirst = first.GetAsync($"/v1/batches/{id}?wait=60");
        var onSecond = second.GetAsync($"/v1/batches/{id}?wait=60");
        var answers = await Task.WhenAll(onFirst, onSecond).WaitAsync(Patience, Ct);

        Assert.All(answers, a => Assert.Equal((200, "completed"), (a.Status, a.Body.GetProperty("status").GetString())));
    }
}
