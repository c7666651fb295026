using System.Text;
using CsCheck;
using Shepherd.Engine.Formats;
using Shepherd.Engine.Model;
using Shepherd.Engine.Storage;
using Shepherd.Testing;

namespace Shepherd.Engine.Tests.Properties;

/// <summary>
/// Random sequences of claims, commits, cancels, expiries, lease releases and clock steps on one
/// batch keep the store's counts and states consistent after every step.
/// </summary>
public sealed class ItemStateProperties : IAsyncLifetime
{
    private const string Model = "m";
    private TempStore _temp = null!;
    private int _batches;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync() => _temp = await TempStore.CreateAsync();

    public async ValueTask DisposeAsync() => await _temp.DisposeAsync();

    /// <summary>One step: what to do, and the numbers it needs.</summary>
    internal enum Op
    {
        Claim,
        Commit,
        Cancel,
        Expire,
        ReleaseLeases,
        Advance,
    }

    private static readonly Gen<(Op Op, OutcomeKind Kind, int A, int B)> Step =
        Gen.Select(
            Gen.Frequency((5, Gen.Const(Op.Claim)), (8, Gen.Const(Op.Commit)), (1, Gen.Const(Op.Cancel)), (1, Gen.Const(Op.Expire)), (1, Gen.Const(Op.ReleaseLeases)), (2, Gen.Const(Op.Advance))),
            Gen.Enum<OutcomeKind>(),
            Gen.Int[0, 1000],
            Gen.Int[0, 120]);

    [Fact]
    public async Task AnySequenceOfOperations_KeepsCountsAndStatesConsistent()
    {
        await Gen.Int[1, 8].Select(Step.Array[1, 40]).SampleAsync(async (total, steps) =>
        {
            var store = _temp.Store;
            var time = _temp.Time;
            var id = $"batch_s{Interlocked.Increment(ref _batches)}";
            await store.CreateBatchAsync(new NewBatch(id, null), Ct);
            await store.AddItemsAsync(id, [.. Enumerable.Range(1, total).Select(i => new ImportItem(i, $"c{i}", Model, Encoding.UTF8.GetBytes($$"""{"model":"m","n":{{i}}}""")))], Ct);
            await store.AcceptBatchAsync(id, new AcceptedInput(InputFormat.OpenAI, BatchEndpoints.ChatCompletions, total, null, 0), Ct);

            // A holder commits its lease once; a lease lost to ReleaseLeases may still be committed late.
            var claims = new List<ClaimedItem>();
            var latest = new Dictionary<long, ClaimedItem>();
            var before = await SnapshotAsync(id, total);
            foreach (var (op, kind, a, b) in steps)
            {
                var stale = false;
                switch (op)
                {
                    case Op.Claim:
                        var now = time.GetUtcNow();
                        foreach (var item in await store.ClaimAsync(Model, id, 1 + (a % 4), now, now.AddMinutes(5), Ct))
                        {
                            Assert.Equal(ItemState.Queued, before.States[(int)item.Line - 1]);
                            claims.Add(item);
                            latest[item.ItemId] = item;
                        }

                        break;
                    case Op.Commit when claims.Count > 0:
                        // The lease is held when the item is leased and this is its newest claim.
                        var chosen = claims[a % claims.Count];
                        claims.Remove(chosen);
                        stale = before.States[(int)chosen.Line - 1] != ItemState.Leased || !ReferenceEquals(latest[chosen.ItemId], chosen);
                        var result = kind switch
                        {
                            OutcomeKind.Succeeded => new AttemptResult { StatusCode = 200, Body = "{\"ok\":true}"u8.ToArray(), InputTokens = 3, OutputTokens = 2 },
                            OutcomeKind.Failed => new AttemptResult { StatusCode = 400, Body = "{\"error\":{}}"u8.ToArray() },
                            OutcomeKind.Retry => new AttemptResult { StatusCode = 503 },
                            _ => new AttemptResult(),
                        };
                        await store.CommitAsync([new ItemOutcome(chosen, kind, result, time.GetUtcNow().AddSeconds(b))], time.GetUtcNow(), Ct);
                        break;
                    case Op.Cancel:
                        await store.CancelBatchAsync(id, time.GetUtcNow(), Ct);
                        break;
                    case Op.Expire:
                        await store.ExpireBatchAsync(id, time.GetUtcNow(), Ct);
                        break;
                    case Op.ReleaseLeases:
                        await store.ReleaseLeasesAsync(Ct);
                        break;
                    case Op.Advance:
                        time.Advance(TimeSpan.FromSeconds(b));
                        break;
                }

                var after = await SnapshotAsync(id, total);
                var where = $"after {op} {kind} {a} {b}: {before} -> {after}";
                if (before.Ended || stale)
                {
                    Assert.True(before.SameAs(after), where);
                }

                Assert.True(after.Ended == (after.Batch.Status is BatchStatus.Completed or BatchStatus.Cancelled or BatchStatus.Expired or BatchStatus.Failed), where);
                before = after;
            }
        }, iter: 150, threads: 1, print: t => $"{t.Item1} items: {string.Join("; ", t.Item2)}");
    }

    private async Task<Snapshot> SnapshotAsync(string id, int total)
    {
        var batch = await _temp.Store.GetBatchAsync(id, Ct);
        Assert.NotNull(batch);
        var items = await _temp.Store.ReadResultsAsync(id, 0, Ct).ToListAsync(Ct);

        // Every item is listed once, in exactly one known state.
        Assert.Equal(Enumerable.Range(1, total).Select(i => (long)i), items.Select(i => i.Line));
        Assert.All(items, i => Assert.True(Enum.IsDefined(i.State), $"line {i.Line} is in state {i.State}"));
        Assert.All(items, i => Assert.NotEqual(ItemState.Staged, i.State));

        // A result exists exactly for the items that ended succeeded or failed.
        Assert.All(items, i => Assert.Equal(i.State is ItemState.Succeeded or ItemState.Failed, i.Result is not null));

        // The batch's counts are the counts of its items' states.
        long Count(ItemState state) => items.Count(i => i.State == state);
        Assert.Equal(total, batch.Total);
        Assert.Equal(Count(ItemState.Succeeded), batch.Succeeded);
        Assert.Equal(Count(ItemState.Failed), batch.Failed);
        Assert.Equal(Count(ItemState.Cancelled), batch.Cancelled);
        Assert.Equal(Count(ItemState.Expired), batch.Expired);
        Assert.InRange(batch.Finished, 0, batch.Total);

        // An ended batch has no work left; a batch with no work left has ended.
        var open = items.Count(i => i.State is ItemState.Queued or ItemState.Leased);
        Assert.True(batch.HasEnded == (open == 0), $"status {batch.Status} with {open} items queued or leased");

        return new Snapshot(batch, [.. items.Select(i => i.State)], [.. items.Select(i => i.Result?.StatusCode)], batch.HasEnded);
    }

    private sealed record Snapshot(BatchRecord Batch, ItemState[] States, int?[] Statuses, bool Ended)
    {
        public bool SameAs(Snapshot other) =>
            Batch.Status == other.Batch.Status
            && (Batch.Succeeded, Batch.Failed, Batch.Cancelled, Batch.Expired, Batch.Total, Batch.InputTokens, Batch.OutputTokens)
                == (other.Batch.Succeeded, other.Batch.Failed, other.Batch.Cancelled, other.Batch.Expired, other.Batch.Total, other.Batch.InputTokens, other.Batch.OutputTokens)
            && (Batch.CompletedAt, Batch.CancelledAt, Batch.ExpiredAt) == (other.Batch.CompletedAt, other.Batch.CancelledAt, other.Batch.ExpiredAt)
            && States.AsSpan().SequenceEqual(other.States)
            && Statuses.AsSpan().SequenceEqual(other.Statuses);

        public override string ToString() => $"{Batch.Status} s{Batch.Succeeded} f{Batch.Failed} c{Batch.Cancelled} e{Batch.Expired} [{string.Join(",", States.Select(s => (int)s))}]";
    }
}
