using System.Text;
using Microsoft.Extensions.Time.Testing;
using Npgsql;
using Shepherd.Engine.Formats;
using Shepherd.Engine.Model;
using Shepherd.Engine.Storage;
using Shepherd.Testing;

namespace Shepherd.Engine.Tests.Storage;

/// <summary>What only a shared store does: several nodes on one database, claiming, dying, sharing lanes, holding roles, telling each other.</summary>
public sealed class PostgresNodesTests : IAsyncLifetime
{
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 11, 28, 12, 0, 0, TimeSpan.Zero));
    private readonly List<PostgresBatchStore> _nodes = [];
    private string _database = null!;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync()
    {
        if (PostgresCluster.SkipReason is { } reason)
        {
            Assert.Skip(reason);
        }

        _database = await PostgresCluster.CreateDatabaseAsync(Ct);
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var node in _nodes)
        {
            await node.DisposeAsync();
        }
    }

    private async Task<PostgresBatchStore> NodeAsync(string name)
    {
        var node = new PostgresBatchStore(new PostgresStoreOptions { ConnectionString = _database, NodeName = name, NodeTimeout = TimeSpan.FromSeconds(10) }, _time);
        _nodes.Add(node);
        await node.InitializeAsync(Ct);
        return node;
    }

    private static async Task AcceptedBatchAsync(PostgresBatchStore store, string id, int items)
    {
        await store.CreateBatchAsync(new NewBatch(id, "input.jsonl"), Ct);
        await store.AddItemsAsync(id, [.. Enumerable.Range(1, items).Select(i => new ImportItem(i, $"c{i}", "m", Encoding.UTF8.GetBytes($$"""{"model":"m","n":{{i}}}""")))], Ct);
        await store.AcceptBatchAsync(id, new AcceptedInput(InputFormat.OpenAI, BatchEndpoints.ChatCompletions, items, null, 0), Ct);
    }

    private Task<IReadOnlyList<ClaimedItem>> ClaimAsync(PostgresBatchStore node, int max) =>
        node.ClaimAsync("m", null, max, _time.GetUtcNow(), _time.GetUtcNow().AddMinutes(30), Ct);

    [Fact]
    public async Task NodesClaimingAtOnce_NeverLeaseAnItemTwice()
    {
        var nodes = new[] { await NodeAsync("a"), await NodeAsync("b"), await NodeAsync("c") };
        await AcceptedBatchAsync(nodes[0], "batch_1", 600);

        // Each node claims in chunks of 7 from four tasks at once until nothing is left.
        var claims = nodes.SelectMany(node => Enumerable.Range(0, 4).Select(_ => Task.Run(async () =>
        {
            var mine = new List<long>();
            while (await ClaimAsync(node, 7) is { Count: > 0 } items)
            {
                mine.AddRange(items.Select(i => i.ItemId));
            }

            return mine;
        }, Ct)));
        var all = (await Task.WhenAll(claims)).SelectMany(ids => ids).ToList();

        Assert.Equal(600, all.Count);
        Assert.Equal(600, all.Distinct().Count());
    }

    [Fact]
    public async Task ADeadNodesLeases_GoToTheOthers_AndItsLateAnswersAreIgnored()
    {
        var a = await NodeAsync("a");
        var b = await NodeAsync("b");
        await AcceptedBatchAsync(a, "batch_1", 10);
        await a.HeartbeatAsync([], _time.GetUtcNow(), Ct);
        await b.HeartbeatAsync([], _time.GetUtcNow(), Ct);
        var held = await ClaimAsync(a, 4);

        // a goes silent; b beats on. Within the timeout nothing moves, past it a's leases are b's to take.
        _time.Advance(TimeSpan.FromSeconds(9));
        await b.HeartbeatAsync([], _time.GetUtcNow(), Ct);
        Assert.Equal(6, (await ClaimAsync(b, 10)).Count);
        _time.Advance(TimeSpan.FromSeconds(2));
        await b.HeartbeatAsync([], _time.GetUtcNow(), Ct);
        var taken = await ClaimAsync(b, 10);

        Assert.Equal(held.Select(i => i.ItemId).Order(), taken.Select(i => i.ItemId).Order());
        Assert.All(taken, item => Assert.Equal(2, item.Attempt));

        // a's answer comes after all: its lease is gone, so only b's answer is recorded.
        await a.CommitAsync([.. held.Select(i => new ItemOutcome(i, OutcomeKind.Succeeded, new AttemptResult { StatusCode = 200, Body = [1] }))], _time.GetUtcNow(), Ct);
        Assert.Equal(0, (await a.GetBatchAsync("batch_1", Ct))!.Succeeded);
        await b.CommitAsync([.. taken.Select(i => new ItemOutcome(i, OutcomeKind.Succeeded, new AttemptResult { StatusCode = 200, Body = [2] }))], _time.GetUtcNow(), Ct);
        Assert.Equal(4, (await b.GetBatchAsync("batch_1", Ct))!.Succeeded);
    }

    [Fact]
    public async Task ANodeRestartingUnderItsName_TakesItsLeasesBackAtOnce()
    {
        var a = await NodeAsync("a");
        await AcceptedBatchAsync(a, "batch_1", 5);
        await ClaimAsync(a, 5);
        var other = await NodeAsync("b");
        await ClaimAsync(other, 5);

        var again = await NodeAsync("a");

        Assert.Equal(5, await again.ReleaseLeasesAsync(Ct));
        Assert.Equal(5, (await ClaimAsync(again, 10)).Count);
    }

    [Fact]
    public async Task Heartbeats_SayHowManyOtherNodesSendOnEachLane()
    {
        var a = await NodeAsync("a");
        var b = await NodeAsync("b");
        var c = await NodeAsync("c");
        var now = _time.GetUtcNow();

        await a.HeartbeatAsync(["openai/m", "openai/n"], now, Ct);
        await b.HeartbeatAsync(["openai/m"], now, Ct);
        var seen = await c.HeartbeatAsync(["openai/m"], now, Ct);

        Assert.Equal(3, seen.Nodes);
        Assert.Equal(2, seen.OthersOnLanes["openai/m"]);
        Assert.Equal(1, seen.OthersOnLanes["openai/n"]);
        var fromA = await a.HeartbeatAsync(["openai/m"], now, Ct);
        Assert.Equal(2, fromA.OthersOnLanes["openai/m"]);
        Assert.False(fromA.OthersOnLanes.ContainsKey("openai/n"));

        // A node that stops beating stops counting.
        _time.Advance(TimeSpan.FromSeconds(11));
        var later = await c.HeartbeatAsync(["openai/m"], _time.GetUtcNow(), Ct);
        Assert.Equal(1, later.Nodes);
        Assert.Empty(later.OthersOnLanes);
    }

    [Fact]
    public async Task ANodeTakenForDead_LearnsItFromItsNextHeartbeat()
    {
        var a = await NodeAsync("a");
        var b = await NodeAsync("b");

        Assert.True((await a.HeartbeatAsync([], _time.GetUtcNow(), Ct)).Joined);
        Assert.False((await a.HeartbeatAsync([], _time.GetUtcNow(), Ct)).Joined);
        _time.Advance(TimeSpan.FromSeconds(11));
        await b.HeartbeatAsync([], _time.GetUtcNow(), Ct);

        Assert.True((await a.HeartbeatAsync([], _time.GetUtcNow(), Ct)).Joined);
    }

    [Fact]
    public async Task ARole_IsHeldByOneLiveNode_AndPassesOnWhenItsHolderGoesSilentOrLeaves()
    {
        var a = await NodeAsync("a");
        var b = await NodeAsync("b");

        Assert.True(await a.HoldRoleAsync("leader", _time.GetUtcNow(), Ct));
        Assert.False(await b.HoldRoleAsync("leader", _time.GetUtcNow(), Ct));
        _time.Advance(TimeSpan.FromSeconds(5));
        Assert.True(await a.HoldRoleAsync("leader", _time.GetUtcNow(), Ct));
        _time.Advance(TimeSpan.FromSeconds(9));
        Assert.False(await b.HoldRoleAsync("leader", _time.GetUtcNow(), Ct));
        _time.Advance(TimeSpan.FromSeconds(2));
        Assert.True(await b.HoldRoleAsync("leader", _time.GetUtcNow(), Ct));
        Assert.False(await a.HoldRoleAsync("leader", _time.GetUtcNow(), Ct));

        await b.LeaveAsync(Ct);
        Assert.True(await a.HoldRoleAsync("leader", _time.GetUtcNow(), Ct));
    }

    [Fact]
    public async Task ANodeThatLeaves_HandsItsLeasesBack()
    {
        var a = await NodeAsync("a");
        var b = await NodeAsync("b");
        await AcceptedBatchAsync(a, "batch_1", 3);
        await ClaimAsync(a, 3);
        Assert.Empty(await ClaimAsync(b, 3));

        await a.LeaveAsync(Ct);

        Assert.Equal(3, (await ClaimAsync(b, 3)).Count);
    }

    [Fact]
    public async Task OtherNodes_AreToldWhenBatchesChange()
    {
        var a = await NodeAsync("a");
        var b = await NodeAsync("b");
        var told = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        b.Changed += () => Volatile.Read(ref told).TrySetResult();

        // The listener starts in the background: until it runs, b hears nothing.
        var warmUps = 0;
        await Poll.UntilAsync(async () =>
        {
            await AcceptedBatchAsync(a, $"batch_warm_{++warmUps}", 1);
            return told.Task.IsCompleted;
        }, TimeSpan.FromSeconds(20), Ct);
        Volatile.Write(ref told, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
        await AcceptedBatchAsync(a, "batch_1", 1);

        await told.Task.WaitAsync(TimeSpan.FromSeconds(20), Ct);
    }

    [Fact]
    public async Task AnUploadBeingRead_IsTakenOverOnlyFromANodeThatDied()
    {
        var a = await NodeAsync("a");
        var b = await NodeAsync("b");
        await a.HeartbeatAsync([], _time.GetUtcNow(), Ct);
        await b.HeartbeatAsync([], _time.GetUtcNow(), Ct);
        await a.CreateBatchAsync(new NewBatch("batch_upload", null) { Door = BatchDoor.OpenAI, InputFileId = "file-x" }, Ct);

        Assert.Empty(await b.ListValidatingBatchesAsync(Ct));

        _time.Advance(TimeSpan.FromSeconds(11));
        await b.HeartbeatAsync([], _time.GetUtcNow(), Ct);
        Assert.Equal("batch_upload", Assert.Single(await b.ListValidatingBatchesAsync(Ct)).Id);
        // Taken over once: a node that starts later finds nothing to take.
        var c = await NodeAsync("c");
        Assert.Empty(await c.ListValidatingBatchesAsync(Ct));
    }

    [Fact]
    public async Task AFileStoredByOneNode_IsReadByAnother_ChunkByChunk()
    {
        var a = await NodeAsync("a");
        var b = await NodeAsync("b");
        var content = new byte[(3 << 20) + 12345];
        new Random(7).NextBytes(content);

        await a.AddFileAsync(new NewFile("file-big", "alice", "big.jsonl", "batch"), new MemoryStream(content), long.MaxValue, Ct);
        await using var read = await b.OpenFileAsync("file-big", Ct);
        using var copy = new MemoryStream();
        await read.CopyToAsync(copy, Ct);

        Assert.Equal(content, copy.ToArray());
        Assert.Equal(content.Length, (await b.GetFileAsync("file-big", Ct))!.Bytes);
        await Assert.ThrowsAsync<FileNotFoundException>(() => b.OpenFileAsync("file-none", Ct));
    }

    [Fact]
    public async Task ANewerSchema_IsRefusedWithAClearMessage()
    {
        await NodeAsync("a");
        await using (var connection = new NpgsqlConnection(_database))
        {
            await connection.OpenAsync(Ct);
            await using var command = new NpgsqlCommand("UPDATE shepherd_schema SET version = 99", connection);
            await command.ExecuteNonQueryAsync(Ct);
        }

        var newer = new PostgresBatchStore(new PostgresStoreOptions { ConnectionString = _database, NodeName = "b" }, _time);
        _nodes.Add(newer);
        var error = await Assert.ThrowsAsync<StoreException>(() => newer.InitializeAsync(Ct));
        Assert.Contains($"newer Shepherd (schema 99; this version knows {PostgresBatchStore.SchemaVersion})", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task NodesStartingTogether_MigrateOnce()
    {
        var starts = Enumerable.Range(0, 5).Select(i => NodeAsync("n" + i));

        await Task.WhenAll(starts);

        await using var connection = new NpgsqlConnection(_database);
        await connection.OpenAsync(Ct);
        await using var command = new NpgsqlCommand("SELECT COUNT(*) FROM shepherd_schema", connection);
        Assert.Equal(1L, await command.ExecuteScalarAsync(Ct));
    }
}
