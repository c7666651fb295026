using System.Text;
using Microsoft.Extensions.Time.Testing;
using Shepherd.Engine.Formats;
using Shepherd.Engine.Model;
using Shepherd.Engine.Storage;

namespace Shepherd.Engine.Tests.Storage;

/// <summary>The behaviour every store must have; each store's suite inherits it.</summary>
public abstract partial class BatchStoreContract : IAsyncLifetime
{
    protected FakeTimeProvider Time { get; } = new(new DateTimeOffset(2026, 11, 28, 12, 0, 0, TimeSpan.Zero));

    protected IBatchStore Store { get; private set; } = null!;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    protected abstract Task<IBatchStore> CreateStoreAsync();

    public async ValueTask InitializeAsync()
    {
        Store = await CreateStoreAsync();
        await Store.InitializeAsync(Ct);
    }

    public virtual async ValueTask DisposeAsync()
    {
        await Store.DisposeAsync();
        GC.SuppressFinalize(this);
    }

    protected async Task<string> CreateAcceptedBatchAsync(int items, string id = "batch_test", BatchPriority priority = BatchPriority.Normal, TimeSpan? window = null, string model = "gpt-4.1-mini")
    {
        await Store.CreateBatchAsync(new NewBatch(id, "input.jsonl", Priority: priority, CompletionWindow: window), Ct);
        var added = Enumerable.Range(1, items)
            .Select(i => new ImportItem(i, $"c{i}", model, Encoding.UTF8.GetBytes($$"""{"model":"{{model}}","n":{{i}}}""")))
            .ToList();
        Assert.Empty(await Store.AddItemsAsync(id, added, Ct));
        await Store.AcceptBatchAsync(id, new AcceptedInput(InputFormat.OpenAI, BatchEndpoints.ChatCompletions, items, "abc", 123), Ct);
        return id;
    }

    private Task<IReadOnlyList<ClaimedItem>> ClaimAsync(string? batch, int max, string model = "gpt-4.1-mini") =>
        Store.ClaimAsync(model, batch, max, Time.GetUtcNow(), Time.GetUtcNow().AddMinutes(30), Ct);

    private static ItemOutcome Success(ClaimedItem item, int input = 10, int output = 5) =>
        new(item, OutcomeKind.Succeeded, new AttemptResult { StatusCode = 200, Body = Encoding.UTF8.GetBytes($$"""{"ok":{{item.Line}}}"""), RequestId = "r" + item.Line, InputTokens = input, OutputTokens = output, CostNanos = (input * 400) + (output * 1600) });

    [Fact]
    public async Task AcceptedBatch_IsInProgress_WithItsInput()
    {
        var id = await CreateAcceptedBatchAsync(3);

        var batch = await Store.GetBatchAsync(id, Ct);

        Assert.NotNull(batch);
        Assert.Equal(BatchStatus.InProgress, batch.Status);
        Assert.Equal(3, batch.Total);
        Assert.Equal(BatchEndpoints.ChatCompletions, batch.Endpoint);
        Assert.Equal("abc", batch.SourceSha256);
        Assert.Equal(123, batch.SourceBytes);
        Assert.Equal(Time.GetUtcNow(), batch.CreatedAt);
        Assert.Equal(id, (await Store.FindBatchBySourceAsync("input.jsonl", Ct))?.Id);
        Assert.Equal([id], (await Store.ListActiveBatchesAsync(Ct)).Select(b => b.Id));
    }

    [Fact]
    public async Task ValidatingBatch_IsNotActive_AndItsItemsAreNotClaimed()
    {
        await Store.CreateBatchAsync(new NewBatch("batch_v", null), Ct);
        await Store.AddItemsAsync("batch_v", [new ImportItem(1, "a", "m", "{}"u8.ToArray())], Ct);

        Assert.Empty(await Store.ListActiveBatchesAsync(Ct));
        Assert.Equal(BatchStatus.Validating, (await Store.GetBatchAsync("batch_v", Ct))?.Status);
    }

    [Fact]
    public async Task AddItems_ReportsDuplicates_WithTheFirstLine()
    {
        await Store.CreateBatchAsync(new NewBatch("batch_d", null), Ct);
        Assert.Empty(await Store.AddItemsAsync("batch_d", [new ImportItem(1, "a", "m", "{}"u8.ToArray()), new ImportItem(2, "b", "m", "{}"u8.ToArray())], Ct));

        var duplicates = await Store.AddItemsAsync("batch_d", [new ImportItem(5, "b", "m", "{}"u8.ToArray()), new ImportItem(6, "c", "m", "{}"u8.ToArray()), new ImportItem(7, "c", "m", "{}"u8.ToArray())], Ct);

        Assert.Equal([new DuplicateCustomId(5, "b", 2), new DuplicateCustomId(7, "c", 6)], duplicates);
    }

    [Fact]
    public async Task Claim_LeasesOldestFirst_AndNeverTwice()
    {
        var id = await CreateAcceptedBatchAsync(5);

        var first = await ClaimAsync(id, 3);
        var second = await ClaimAsync(id, 3);
        var third = await ClaimAsync(id, 3);

        Assert.Equal([1L, 2, 3], first.Select(i => i.Line));
        Assert.Equal([4L, 5], second.Select(i => i.Line));
        Assert.Empty(third);
        Assert.All(first.Concat(second), item => Assert.Equal(1, item.Attempt));
        Assert.Equal("""{"model":"gpt-4.1-mini","n":2}""", Encoding.UTF8.GetString(first[1].Body));
        Assert.Equal("c2", first[1].CustomId);
        Assert.Equal("gpt-4.1-mini", first[1].Model);
    }

    [Fact]
    public async Task Commit_RecordsResults_AndCompletesTheBatchWithItsLastItem()
    {
        var id = await CreateAcceptedBatchAsync(3);
        var items = await ClaimAsync(id, 3);

        var partial = await Store.CommitAsync([Success(items[0]), new ItemOutcome(items[1], OutcomeKind.Failed, new AttemptResult { StatusCode = 400, Body = "{\"error\":{}}"u8.ToArray() })], Time.GetUtcNow(), Ct);
        var final = await Store.CommitAsync([Success(items[2], 7, 3)], Time.GetUtcNow(), Ct);

        Assert.Empty(partial.CompletedBatches);
        Assert.Equal([id], final.CompletedBatches);
        var batch = await Store.GetBatchAsync(id, Ct);
        Assert.Equal(BatchStatus.Completed, batch?.Status);
        Assert.Equal((2L, 1L, 17L, 8L), (batch!.Succeeded, batch.Failed, batch.InputTokens, batch.OutputTokens));
        Assert.Empty(await Store.ListActiveBatchesAsync(Ct));

        var results = await Store.ReadResultsAsync(id, 0, Ct).ToListAsync(Ct);
        Assert.Equal([ItemState.Succeeded, ItemState.Failed, ItemState.Succeeded], results.Select(r => r.State));
        Assert.Equal(400, results[1].Result?.StatusCode);
        Assert.Equal("r3", results[2].Result?.RequestId);
        Assert.Equal("""{"ok":3}""", Encoding.UTF8.GetString(results[2].Result!.Body!));
    }

    [Fact]
    public async Task Commit_OfALostLease_ChangesNothing()
    {
        var id = await CreateAcceptedBatchAsync(1);
        var stale = (await ClaimAsync(id, 1)).Single();
        await Store.ReleaseLeasesAsync(Ct);
        var current = (await ClaimAsync(id, 1)).Single();

        await Store.CommitAsync([Success(stale)], Time.GetUtcNow(), Ct);
        var afterStale = await Store.GetBatchAsync(id, Ct);
        await Store.CommitAsync([Success(current)], Time.GetUtcNow(), Ct);
        await Store.CommitAsync([Success(current)], Time.GetUtcNow(), Ct);
        var afterCurrent = await Store.GetBatchAsync(id, Ct);

        Assert.Equal(2, current.Attempt);
        Assert.Equal(0, afterStale?.Succeeded);
        Assert.Equal(1, afterCurrent?.Succeeded);
        Assert.Equal(10, afterCurrent?.InputTokens);
        Assert.Equal(12_000, afterCurrent?.CostNanos);
    }

    [Fact]
    public async Task Costs_AreRecordedWithEachAnswer_AndUnpricedAnswersCounted()
    {
        var id = await CreateAcceptedBatchAsync(3);
        var items = await ClaimAsync(id, 3);

        await Store.CommitAsync(
        [
            Success(items[0], 100, 50),
            new ItemOutcome(items[1], OutcomeKind.Succeeded, new AttemptResult { StatusCode = 200, Body = "{}"u8.ToArray(), InputTokens = 7, OutputTokens = 3, Priced = false }),
            new ItemOutcome(items[2], OutcomeKind.Succeeded, new AttemptResult { StatusCode = 200, Body = "{}"u8.ToArray(), InputTokens = 20, OutputTokens = 0, CachedTokens = 16, CostNanos = 999 }),
        ], Time.GetUtcNow(), Ct);

        var batch = await Store.GetBatchAsync(id, Ct);
        var results = await Store.ReadResultsAsync(id, 0, Ct).ToListAsync(Ct);
        Assert.Equal((120_000L + 999, 1L), (batch!.CostNanos, batch.Unpriced));
        Assert.Equal([120_000L, 0, 999], results.Select(r => r.Result!.CostNanos));
        Assert.Equal(16, results[2].Result!.CachedTokens);
    }

    [Fact]
    public async Task Retry_RequeuesTheItem_NotBeforeItsTime()
    {
        var id = await CreateAcceptedBatchAsync(1);
        var item = (await ClaimAsync(id, 1)).Single();
        var due = Time.GetUtcNow().AddSeconds(30);

        await Store.CommitAsync([new ItemOutcome(item, OutcomeKind.Retry, new AttemptResult { StatusCode = 503 }, due)], Time.GetUtcNow(), Ct);

        Assert.Empty(await ClaimAsync(id, 1));
        Assert.Equal(due, await Store.NextDueAsync("gpt-4.1-mini", id, Ct));
        Time.Advance(TimeSpan.FromSeconds(30));
        var again = Assert.Single(await ClaimAsync(id, 1));
        Assert.Equal(2, again.Attempt);
        Assert.Equal(BatchStatus.InProgress, (await Store.GetBatchAsync(id, Ct))?.Status);
    }

    [Fact]
    public async Task ReleasedOutcome_QueuesTheItem_WithoutCountingTheAttempt()
    {
        var id = await CreateAcceptedBatchAsync(1);
        var item = (await ClaimAsync(id, 1)).Single();

        await Store.CommitAsync([new ItemOutcome(item, OutcomeKind.Released, new AttemptResult())], Time.GetUtcNow(), Ct);

        Assert.Equal(1, Assert.Single(await ClaimAsync(id, 1)).Attempt);
    }

    [Fact]
    public async Task ReleaseLeases_QueuesLeasedItemsAgain()
    {
        var id = await CreateAcceptedBatchAsync(4);
        await ClaimAsync(id, 3);

        var released = await Store.ReleaseLeasesAsync(Ct);

        Assert.Equal(3, released);
        Assert.Equal([1L, 2, 3, 4], (await ClaimAsync(id, 10)).Select(i => i.Line));
    }

    [Fact]
    public async Task ReadResults_StreamsEveryItemInLineOrder_AcrossPages()
    {
        var id = await CreateAcceptedBatchAsync(2500);
        var claimed = await ClaimAsync(id, 2500);
        await Store.CommitAsync([.. claimed.Where(i => i.Line % 2 == 0).Select(i => Success(i))], Time.GetUtcNow(), Ct);

        var results = await Store.ReadResultsAsync(id, 0, Ct).ToListAsync(Ct);

        Assert.Equal(Enumerable.Range(1, 2500).Select(i => (long)i), results.Select(r => r.Line));
        Assert.All(results, r => Assert.Equal(r.Line % 2 == 0 ? ItemState.Succeeded : ItemState.Leased, r.State));
        Assert.All(results.Where(r => r.Line % 2 == 1), r => Assert.Null(r.Result));
    }

    [Fact]
    public async Task RejectBatch_RemovesItsItems_AndKeepsTheErrors()
    {
        await Store.CreateBatchAsync(new NewBatch("batch_r", "bad.jsonl"), Ct);
        await Store.AddItemsAsync("batch_r", [new ImportItem(1, "a", "m", "{}"u8.ToArray())], Ct);
        InputError[] errors = [new("duplicate_custom_id", "custom_id \"a\" is already used on line 1", 2), new("empty_file", "nothing", null)];

        await Store.RejectBatchAsync("batch_r", errors, Ct);

        var batch = await Store.GetBatchAsync("batch_r", Ct);
        Assert.Equal(BatchStatus.Failed, batch?.Status);
        Assert.Equal(errors, batch?.Errors);
        Assert.Equal(Time.GetUtcNow(), batch?.FailedAt);
        Assert.Empty(await Store.ReadResultsAsync("batch_r", 0, Ct).ToListAsync(Ct));
    }

    [Fact]
    public async Task DeleteBatch_RemovesEverything()
    {
        var id = await CreateAcceptedBatchAsync(3);
        var items = await ClaimAsync(id, 1);
        await Store.CommitAsync([Success(items[0])], Time.GetUtcNow(), Ct);

        await Store.DeleteBatchAsync(id, Ct);

        Assert.Null(await Store.GetBatchAsync(id, Ct));
        Assert.Empty(await Store.ReadResultsAsync(id, 0, Ct).ToListAsync(Ct));
        await CreateAcceptedBatchAsync(3);
    }

    [Fact]
    public async Task Claims_CanBeLimitedToOneBatch()
    {
        var a = await CreateAcceptedBatchAsync(2, "batch_a");
        var b = await CreateAcceptedBatchAsync(2, "batch_b");

        Assert.All(await ClaimAsync(a, 10), item => Assert.Equal(a, item.BatchId));
        Assert.All(await ClaimAsync(b, 10), item => Assert.Equal(b, item.BatchId));
    }

    [Fact]
    public async Task Claims_AreByModel_HigherPriorityFirst_ThenOldest()
    {
        await CreateAcceptedBatchAsync(2, "batch_low", BatchPriority.Low);
        await CreateAcceptedBatchAsync(2, "batch_normal");
        await CreateAcceptedBatchAsync(2, "batch_high", BatchPriority.High);
        await CreateAcceptedBatchAsync(2, "batch_other_model", model: "claude-haiku-4.5");

        var claimed = await ClaimAsync(null, 10);

        Assert.Equal(["batch_high", "batch_high", "batch_normal", "batch_normal", "batch_low", "batch_low"], claimed.Select(i => i.BatchId));
        Assert.Equal([BatchPriority.High, BatchPriority.High], claimed.Take(2).Select(i => i.Priority));
        Assert.All(claimed, i => Assert.Equal(BatchEndpoints.ChatCompletions, i.Url));
        Assert.Equal(["batch_other_model", "batch_other_model"], (await ClaimAsync(null, 10, "claude-haiku-4.5")).Select(i => i.BatchId));
        Assert.Equal(["claude-haiku-4.5", "gpt-4.1-mini"], await Store.ListActiveModelsAsync(null, Ct));
        Assert.Equal(["claude-haiku-4.5"], await Store.ListActiveModelsAsync("batch_other_model", Ct));
    }

    [Fact]
    public async Task Cancel_EndsUnsentItemsAtOnce_AndTheBatchWhenTheLastInFlightEnds()
    {
        var id = await CreateAcceptedBatchAsync(4);
        var inFlight = await ClaimAsync(id, 1);

        var cancelling = await Store.CancelBatchAsync(id, Time.GetUtcNow(), Ct);

        Assert.Equal((BatchStatus.Cancelling, 3L), (cancelling!.Status, cancelling.Cancelled));
        Assert.Equal(Time.GetUtcNow(), cancelling.CancellingAt);
        Assert.Empty(await ClaimAsync(id, 10));
        Assert.Empty(await Store.ListActiveBatchesAsync(Ct));
        var summary = await Store.CommitAsync([Success(inFlight[0])], Time.GetUtcNow(), Ct);
        var cancelled = await Store.GetBatchAsync(id, Ct);
        Assert.Equal([id], summary.CompletedBatches);
        Assert.Equal((BatchStatus.Cancelled, 1L, 3L), (cancelled!.Status, cancelled.Succeeded, cancelled.Cancelled));
        Assert.Equal([ItemState.Succeeded, ItemState.Cancelled, ItemState.Cancelled, ItemState.Cancelled], (await Store.ReadResultsAsync(id, 0, Ct).ToListAsync(Ct)).Select(r => r.State));
        Assert.Equal(BatchStatus.Cancelled, (await Store.CancelBatchAsync(id, Time.GetUtcNow(), Ct))?.Status);
        Assert.Null(await Store.CancelBatchAsync("batch_missing", Time.GetUtcNow(), Ct));
    }

    [Fact]
    public async Task ALargeBatch_IsQueuedWhole_AndCancelledWhole()
    {
        // More items than the store changes in one statement: every step must take its share.
        const int Items = 45_001;
        var queued = await CreateAcceptedBatchAsync(Items, "batch_queued");
        var cancelled = await CreateAcceptedBatchAsync(Items, "batch_cancelled");

        var claimed = await ClaimAsync(queued, Items + 10);
        var ended = await Store.CancelBatchAsync(cancelled, Time.GetUtcNow(), Ct);

        Assert.Equal(Enumerable.Range(1, Items).Select(i => (long)i), claimed.Select(item => item.Line).Order());
        Assert.Equal((BatchStatus.Cancelled, (long)Items), (ended!.Status, ended.Cancelled));
    }

    [Fact]
    public async Task Cancel_WithNothingInFlight_EndsTheBatchAtOnce()
    {
        var id = await CreateAcceptedBatchAsync(2);

        var cancelled = await Store.CancelBatchAsync(id, Time.GetUtcNow(), Ct);

        Assert.Equal((BatchStatus.Cancelled, 2L), (cancelled!.Status, cancelled.Cancelled));
        Assert.True(cancelled.HasEnded);
    }

    [Fact]
    public async Task Expire_EndsUnsentItems_AndTheBatchExpires()
    {
        var id = await CreateAcceptedBatchAsync(3, window: TimeSpan.FromHours(1));
        var inFlight = await ClaimAsync(id, 1);
        Assert.Equal(Time.GetUtcNow().AddHours(1), (await Store.GetBatchAsync(id, Ct))!.ExpiresAt);

        await Store.ExpireBatchAsync(id, Time.GetUtcNow(), Ct);
        var expiring = await Store.GetBatchAsync(id, Ct);
        await Store.CommitAsync([new ItemOutcome(inFlight[0], OutcomeKind.Expired, new AttemptResult())], Time.GetUtcNow(), Ct);
        var expired = await Store.GetBatchAsync(id, Ct);

        Assert.Equal((BatchStatus.InProgress, 2L), (expiring!.Status, expiring.Expired));
        Assert.Equal((BatchStatus.Expired, 3L, Time.GetUtcNow()), (expired!.Status, expired.Expired, expired.ExpiredAt!.Value));
    }

    [Fact]
    public async Task ItemsOfAValidatingBatch_AreNotClaimed()
    {
        await Store.CreateBatchAsync(new NewBatch("batch_staged", null), Ct);
        await Store.AddItemsAsync("batch_staged", [new ImportItem(1, "a", "gpt-4.1-mini", "{}"u8.ToArray())], Ct);

        Assert.Empty(await ClaimAsync(null, 10));
        Assert.Empty(await Store.ListActiveModelsAsync(null, Ct));
    }

    [Fact]
    public async Task ABatchsModels_AreListedWhateverItsStatus_AndOnlyItsOwn()
    {
        await Store.CreateBatchAsync(new NewBatch("batch_two_models", null), Ct);
        await Store.AddItemsAsync("batch_two_models", [
            new ImportItem(1, "a", "gpt-4.1-mini", "{}"u8.ToArray()),
            new ImportItem(2, "b", "claude-haiku-4.5", "{}"u8.ToArray()),
            new ImportItem(3, "c", "gpt-4.1-mini", "{}"u8.ToArray())], Ct);
        await CreateAcceptedBatchAsync(1, "batch_other", model: "gpt-4o");

        Assert.Equal(["claude-haiku-4.5", "gpt-4.1-mini"], await Store.ListModelsAsync("batch_two_models", Ct));
        Assert.Equal(["gpt-4o"], await Store.ListModelsAsync("batch_other", Ct));
        Assert.Empty(await Store.ListModelsAsync("batch_missing", Ct));
    }

    [Fact]
    public async Task AnIdempotentCreate_ReturnsTheFirstBatch_PerOwner()
    {
        var first = await Store.CreateBatchAsync(new NewBatch("batch_1", null) { Owner = "alice", IdempotencyKey = "k1" }, Ct);
        var again = await Store.CreateBatchAsync(new NewBatch("batch_2", null) { Owner = "alice", IdempotencyKey = "k1" }, Ct);
        var otherOwner = await Store.CreateBatchAsync(new NewBatch("batch_3", null) { Owner = "bob", IdempotencyKey = "k1" }, Ct);
        var noKey = await Store.CreateBatchAsync(new NewBatch("batch_4", null) { Owner = "alice" }, Ct);

        Assert.Equal(["batch_1", "batch_1", "batch_3", "batch_4"], [first, again, otherOwner, noKey]);
        Assert.Null(await Store.GetBatchAsync("batch_2", Ct));
    }

    [Fact]
    public async Task AnIdempotencyKey_ReusedForAnotherBody_IsRefused_AndTheSameBodyGetsTheFirstBatch()
    {
        await Store.CreateBatchAsync(new NewBatch("batch_1", null) { Owner = "alice", IdempotencyKey = "k1", BodySha256 = "aa" }, Ct);

        var refused = await Assert.ThrowsAsync<IdempotencyKeyReusedException>(
            () => Store.CreateBatchAsync(new NewBatch("batch_2", null) { Owner = "alice", IdempotencyKey = "k1", BodySha256 = "bb" }, Ct));
        var same = await Store.CreateBatchAsync(new NewBatch("batch_3", null) { Owner = "alice", IdempotencyKey = "k1", BodySha256 = "aa" }, Ct);

        Assert.Equal("batch_1", refused.BatchId);
        Assert.Equal("batch_1", same);
        Assert.Null(await Store.GetBatchAsync("batch_2", Ct));
    }

    [Fact]
    public async Task ABatch_KeepsWhatItWasCreatedWith()
    {
        await Store.CreateBatchAsync(new NewBatch("batch_m", "upload", "/v1/embeddings", CompletionWindow: TimeSpan.FromHours(24))
        {
            Owner = "alice",
            Door = BatchDoor.OpenAI,
            InputFileId = "file-1",
            CompletionWindowText = "24h",
            Metadata = new Dictionary<string, string> { ["team"] = "search", ["run"] = "7" },
            Model = "text-embedding-3-small",
            IdempotencyKey = "abc",
        }, Ct);

        var batch = await Store.GetBatchAsync("batch_m", Ct);

        Assert.Equal(("alice", BatchDoor.OpenAI, "file-1", "24h"), (batch!.Owner, batch.Door, batch.InputFileId, batch.CompletionWindow));
        Assert.Equal(new Dictionary<string, string> { ["team"] = "search", ["run"] = "7" }, batch.Metadata);
        Assert.Equal(("text-embedding-3-small", "abc", "/v1/embeddings"), (batch.Model, batch.IdempotencyKey, batch.Endpoint));
        Assert.Equal(Time.GetUtcNow().AddHours(24), batch.ExpiresAt);
    }

    [Fact]
    public async Task Listings_AreNewestFirst_PerOwnerAndDoor_AndPageBothWays()
    {
        for (var i = 1; i <= 5; i++)
        {
            await Store.CreateBatchAsync(new NewBatch($"batch_{i}", null) { Owner = "alice", Door = BatchDoor.OpenAI }, Ct);
        }

        await Store.CreateBatchAsync(new NewBatch("batch_bob", null) { Owner = "bob", Door = BatchDoor.OpenAI }, Ct);
        await Store.CreateBatchAsync(new NewBatch("batch_anthropic", null) { Owner = "alice", Door = BatchDoor.Anthropic }, Ct);
        BatchDoor[] openAI = [BatchDoor.OpenAI, BatchDoor.Inline];

        var first = await Store.ListBatchesAsync("alice", openAI, new PageRequest(2), Ct);
        var second = await Store.ListBatchesAsync("alice", openAI, new PageRequest(2, After: "batch_4"), Ct);
        var last = await Store.ListBatchesAsync("alice", openAI, new PageRequest(2, After: "batch_2"), Ct);
        var back = await Store.ListBatchesAsync("alice", openAI, new PageRequest(2, Before: "batch_3"), Ct);

        Assert.Equal("batch_5,batch_4 more", Describe(first));
        Assert.Equal("batch_3,batch_2 more", Describe(second));
        Assert.Equal("batch_1 end", Describe(last));
        Assert.Equal("batch_5,batch_4 end", Describe(back));
        Assert.Equal(["batch_anthropic"], (await Store.ListBatchesAsync("alice", [BatchDoor.Anthropic], new PageRequest(10), Ct)).Items.Select(b => b.Id));
    }

    private static string Describe(Page<BatchRecord> page) => string.Join(',', page.Items.Select(b => b.Id)) + (page.HasMore ? " more" : " end");

    [Fact]
    public async Task ABatchOfAnApiDoor_IsFinalizedBeforeItEnds()
    {
        await Store.CreateBatchAsync(new NewBatch("batch_f", null) { Owner = "alice", Door = BatchDoor.OpenAI }, Ct);
        await Store.AddItemsAsync("batch_f", [new ImportItem(1, "a", "gpt-4.1-mini", "{}"u8.ToArray())], Ct);
        await Store.AcceptBatchAsync("batch_f", new AcceptedInput(InputFormat.OpenAI, BatchEndpoints.ChatCompletions, 1, null, 2), Ct);
        var item = (await ClaimAsync("batch_f", 1)).Single();

        var summary = await Store.CommitAsync([Success(item)], Time.GetUtcNow(), Ct);
        var finalizing = await Store.GetBatchAsync("batch_f", Ct);
        var toFinalize = await Store.ListFinalizingBatchesAsync(Ct);
        await Store.FinishFinalizingAsync("batch_f", "file-out", null, Time.GetUtcNow(), Ct);
        var completed = await Store.GetBatchAsync("batch_f", Ct);

        Assert.Equal(["batch_f"], summary.CompletedBatches);
        Assert.Equal((BatchStatus.Finalizing, false), (finalizing!.Status, finalizing.HasEnded));
        Assert.Equal(["batch_f"], toFinalize.Select(b => b.Id));
        Assert.Empty(await Store.ListFinalizingBatchesAsync(Ct));
        Assert.Equal((BatchStatus.Completed, "file-out", (string?)null), (completed!.Status, completed.OutputFileId, completed.ErrorFileId));
        Assert.Equal(Time.GetUtcNow(), completed.CompletedAt);
    }

    [Fact]
    public async Task Requests_AreReadBackByState_InInputOrder_WithTheirBodies()
    {
        await Store.CreateBatchAsync(new NewBatch("batch_r", null), Ct);
        await Store.AddItemsAsync("batch_r", [.. Enumerable.Range(1, 5).Select(i => new ImportItem(i, $"c{i}", "m", Encoding.UTF8.GetBytes($"{{\"n\":{i}}}")))], Ct);
        await Store.AcceptBatchAsync("batch_r", new AcceptedInput(InputFormat.OpenAI, "/v1/chat/completions", 5, null, 0), Ct);

        var queued = await Store.ReadRequestsAsync("batch_r", [ItemState.Queued], Ct).ToListAsync(Ct);
        var none = await Store.ReadRequestsAsync("batch_r", [ItemState.Failed], Ct).ToListAsync(Ct);

        Assert.Equal(["c1", "c2", "c3", "c4", "c5"], queued.Select(r => r.CustomId));
        Assert.Equal("{\"n\":3}", Encoding.UTF8.GetString(queued[2].Body));
        Assert.Equal(3, queued[2].Line);
        Assert.Empty(none);
    }

    [Fact]
    public async Task OnStart_WhatWasInFlightForACancellingOrExpiredBatch_EndsWithIt()
    {
        var cancelled = await CreateAcceptedBatchAsync(3);
        var expired = await CreateAcceptedBatchAsync(2, id: "batch_expiring");
        var inFlight = await ClaimAsync(cancelled, 3);
        await ClaimAsync(expired, 2);
        await Store.CommitAsync([Success(inFlight[0])], Time.GetUtcNow(), Ct);
        await Store.CancelBatchAsync(cancelled, Time.GetUtcNow(), Ct);
        await Store.ExpireBatchAsync(expired, Time.GetUtcNow(), Ct);

        // A restart: the leases of requests in flight are released.
        await Store.ReleaseLeasesAsync(Ct);

        var afterCancel = await Store.GetBatchAsync(cancelled, Ct);
        var afterExpiry = await Store.GetBatchAsync(expired, Ct);
        Assert.Equal((BatchStatus.Cancelled, 1L, 2L), (afterCancel!.Status, afterCancel.Succeeded, afterCancel.Cancelled));
        Assert.Equal((BatchStatus.Expired, 2L), (afterExpiry!.Status, afterExpiry.Expired));
    }

    [Fact]
    public async Task AnItemHandedBackAfterACancel_EndsCancelled_AndTheBatchEnds()
    {
        var id = await CreateAcceptedBatchAsync(2);
        var leased = await ClaimAsync(id, 2);
        await Store.CancelBatchAsync(id, Time.GetUtcNow(), Ct);

        await Store.CommitAsync([Success(leased[0]), new ItemOutcome(leased[1], OutcomeKind.Released, new AttemptResult())], Time.GetUtcNow(), Ct);

        var batch = await Store.GetBatchAsync(id, Ct);
        Assert.Equal((BatchStatus.Cancelled, 1L, 1L), (batch!.Status, batch.Succeeded, batch.Cancelled));
    }

    [Fact]
    public async Task DeletingAFileNeverStored_SaysSo()
    {
        Assert.False(await Store.DeleteFileAsync("file-never", Ct));
    }

    [Fact]
    public async Task Files_AreStoredStreamed_ListedAndRemoved()
    {
        using var content = new MemoryStream("{\"a\":1}\n"u8.ToArray());

        var file = await Store.AddFileAsync(new NewFile("file-abc", "alice", "in.jsonl", "batch"), content, 1024, Ct);
        await Store.AddFileAsync(new NewFile("file-def", "alice", "out.jsonl", "batch_output", "batch_x"), new MemoryStream([1, 2, 3]), 1024, Ct);

        Assert.Equal((8L, "in.jsonl", "batch"), (file.Bytes, file.Filename, file.Purpose));
        Assert.Equal(file, await Store.GetFileAsync("file-abc", Ct));
        await using (var read = await Store.OpenFileAsync("file-abc", Ct))
        using (var reader = new StreamReader(read))
        {
            Assert.Equal("{\"a\":1}\n", await reader.ReadToEndAsync(Ct));
        }

        Assert.Equal(["file-def", "file-abc"], (await Store.ListFilesAsync("alice", null, new PageRequest(10), Ct)).Items.Select(f => f.Id));
        Assert.Equal(["file-abc"], (await Store.ListFilesAsync("alice", "batch", new PageRequest(10), Ct)).Items.Select(f => f.Id));
        Assert.Empty((await Store.ListFilesAsync("bob", null, new PageRequest(10), Ct)).Items);
        Assert.True(await Store.DeleteFileAsync("file-abc", Ct));
        Assert.False(await Store.DeleteFileAsync("file-abc", Ct));
        Assert.Null(await Store.GetFileAsync("file-abc", Ct));
    }

    [Fact]
    public async Task Files_ListOldestFirst_AndPageOnToNewerOnes()
    {
        foreach (var id in new[] { "file-a", "file-b", "file-c" })
        {
            await Store.AddFileAsync(new NewFile(id, "alice", "in.jsonl", "batch"), new MemoryStream([1]), 1024, Ct);
        }

        Assert.Equal(["file-a", "file-b", "file-c"], (await Store.ListFilesAsync("alice", null, new PageRequest(10, OldestFirst: true), Ct)).Items.Select(f => f.Id));
        var first = await Store.ListFilesAsync("alice", null, new PageRequest(2, OldestFirst: true), Ct);
        Assert.Equal(["file-a", "file-b"], first.Items.Select(f => f.Id));
        Assert.True(first.HasMore);
        var next = await Store.ListFilesAsync("alice", null, new PageRequest(2, "file-b", OldestFirst: true), Ct);
        Assert.Equal(["file-c"], next.Items.Select(f => f.Id));
        Assert.False(next.HasMore);
    }

    [Fact]
    public async Task AFileOverTheLimit_IsRefused_AndNothingOfItKept()
    {
        await Assert.ThrowsAsync<FileTooLargeException>(() =>
            Store.AddFileAsync(new NewFile("file-big", "alice", "big.jsonl", "batch"), new MemoryStream(new byte[5000]), 4096, Ct));

        Assert.Null(await Store.GetFileAsync("file-big", Ct));
    }

    [Fact]
    public async Task Results_CanBeReadFromAnOffset_OrOneByCustomId()
    {
        var id = await CreateAcceptedBatchAsync(5);
        var claimed = await ClaimAsync(id, 5);
        await Store.CommitAsync([.. claimed.Select(i => Success(i))], Time.GetUtcNow(), Ct);

        var tail = await Store.ReadResultsAsync(id, 3, Ct).ToListAsync(Ct);
        var one = await Store.GetResultAsync(id, "c2", Ct);

        Assert.Equal(["c4", "c5"], tail.Select(r => r.CustomId));
        Assert.Equal((2L, ItemState.Succeeded), (one!.Line, one.State));
        Assert.Null(await Store.GetResultAsync(id, "nope", Ct));
    }

    [Fact]
    public async Task ATenantsUsage_CountsItsOpenBatchesAndTheirUnfinishedRequests()
    {
        await Store.CreateBatchAsync(new NewBatch("batch_a1", null) { Owner = "alice" }, Ct);
        await Store.AddItemsAsync("batch_a1", [.. Enumerable.Range(1, 5).Select(i => new ImportItem(i, $"c{i}", "m", Encoding.UTF8.GetBytes("{}")))], Ct);
        await Store.AcceptBatchAsync("batch_a1", new AcceptedInput(InputFormat.OpenAI, BatchEndpoints.ChatCompletions, 5, null, 0), Ct);
        await Store.CreateBatchAsync(new NewBatch("batch_a2", null) { Owner = "alice" }, Ct);
        await Store.CreateBatchAsync(new NewBatch("batch_b1", null) { Owner = "bob" }, Ct);
        var claimed = await Store.ClaimAsync("m", "batch_a1", 2, Time.GetUtcNow(), Time.GetUtcNow().AddMinutes(1), Ct);
        await Store.CommitAsync([.. claimed.Select(i => Success(i))], Time.GetUtcNow(), Ct);

        Assert.Equal(new TenantUsage(2, 3), await Store.GetUsageAsync("alice", Ct));
        Assert.Equal(new TenantUsage(1, 0), await Store.GetUsageAsync("bob", Ct));
        Assert.Equal(new TenantUsage(0, 0), await Store.GetUsageAsync(null, Ct));
        await Store.CancelBatchAsync("batch_a2", Time.GetUtcNow(), Ct);
        Assert.Equal(1, (await Store.GetUsageAsync("alice", Ct)).OpenBatches);

        var everyone = await Store.ListBatchesAsync(new OwnerScope(null, Everyone: true), [BatchDoor.Run], new PageRequest(10), Ct);
        Assert.Equal(["batch_b1", "batch_a2", "batch_a1"], everyone.Items.Select(b => b.Id));
        Assert.Equal(["batch_b1"], (await Store.ListBatchesAsync("bob", [BatchDoor.Run], new PageRequest(10), Ct)).Items.Select(b => b.Id));
    }

    [Fact]
    public async Task AnOutcomeOfAReleasedLease_ChangesNothing_AfterTheItemIsClaimedAgain()
    {
        // Found by the state-machine property: a lease handed back unsent gives its attempt back,
        // so the next claim has the same attempt; the lease's own number still tells them apart.
        var id = await CreateAcceptedBatchAsync(1);
        var first = Assert.Single(await ClaimAsync(id, 1));
        await Store.CommitAsync([new ItemOutcome(first, OutcomeKind.Released, new AttemptResult())], Time.GetUtcNow(), Ct);
        var second = Assert.Single(await ClaimAsync(id, 1));

        await Store.CommitAsync([new ItemOutcome(first, OutcomeKind.Failed, new AttemptResult { StatusCode = 400 })], Time.GetUtcNow(), Ct);

        Assert.Equal(first.Attempt, second.Attempt);
        Assert.NotEqual(first.Lease, second.Lease);
        Assert.Equal(ItemState.Leased, (await Store.GetResultAsync(id, "c1", Ct))?.State);
        await Store.CommitAsync([Success(second)], Time.GetUtcNow(), Ct);
        Assert.Equal(ItemState.Succeeded, (await Store.GetResultAsync(id, "c1", Ct))?.State);
    }
}
