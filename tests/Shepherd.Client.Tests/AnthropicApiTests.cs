using System.Text.Json;
using System.Text.Json.Nodes;
using Shepherd.Client.Backends;
using Shepherd.Server.Tests;
using Shepherd.Simulator;
using Shepherd.Testing;

namespace Shepherd.Client.Tests;

/// <summary>
/// <see cref="ShepherdClient"/> speaking the Anthropic Message Batches API (<see cref="BatchApi.Anthropic"/>)
/// to a real Shepherd server's <c>/v1/messages/batches</c> door, which sends to the simulated provider.
/// </summary>
public sealed class AnthropicApiTests
{
    private const string ModelName = "claude-sonnet-4-5";

    /// <summary>Five prompt tokens by the simulator's estimate.</summary>
    private const string ShortPrompt = "hi";

    /// <summary>Nineteen prompt tokens: over <see cref="Context"/>, a permanent 400 upstream.</summary>
    private const string LongPrompt = "Please summarise this long review of a rather ordinary hotel.";

    /// <summary>Room for <see cref="ShortPrompt"/> but not <see cref="LongPrompt"/>.</summary>
    private const int Context = 10;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>Two requests per second: a batch of a few dozen stays in progress for seconds, long enough to act on it.</summary>
    private static SimulatorOptions Slow => new() { Latency = TimeSpan.FromMilliseconds(2), RequestsPerMinute = 120 };

    [Fact]
    public async Task ABatchOfPromptsAndBodies_RunsToTheEnd_AndItsResultsStreamBackMapped()
    {
        await using var server = await RunningServer.StartAsync(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(2), ContextTokens = Context });
        using var client = Client(server);

        var created = await client.CreateBatchAsync(new NewBatch
        {
            Model = ModelName,
            Requests =
            [
                BatchItem.FromPrompt("prompt", ShortPrompt),
                BatchItem.FromBody("body", new JsonObject { ["max_tokens"] = 16, ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = ShortPrompt }) }),
                BatchItem.FromPrompt("too-long", LongPrompt),
            ],
        }, Ct);

        Assert.StartsWith("msgbatch_", created.Id, StringComparison.Ordinal);
        Assert.Equal("/v1/messages", created.Endpoint);
        Assert.Equal(3, created.Total);
        Assert.InRange(created.ExpiresAt!.Value - created.CreatedAt, TimeSpan.FromHours(24) - TimeSpan.FromSeconds(1), TimeSpan.FromHours(24) + TimeSpan.FromSeconds(1));

        var seen = new RecordingProgress();
        var completion = await client.WaitForCompletionAsync(created.Id, seen, TimeSpan.FromMinutes(1), Ct);

        Assert.False(completion.TimedOut);
        var ended = completion.Batch;
        Assert.Equal(BatchStatus.Completed, ended.Status);
        Assert.Equal((3L, 2L, 1L), (ended.Total, ended.Succeeded, ended.Failed));
        Assert.False(completion.AllSucceeded);
        Assert.True(ended.EndedAt >= ended.CreatedAt, $"ended_at {ended.EndedAt} is not after created_at {ended.CreatedAt}");
        Assert.Equal(created.CreatedAt, ended.CreatedAt);
        Assert.Same(ended, seen.Reports[^1].Batch);
        Assert.Equal(100, seen.Reports[^1].Percent);

        var results = new Dictionary<string, BatchResult>();
        await foreach (var result in client.GetResultsAsync(created.Id, Ct))
        {
            results.Add(result.CustomId, result);
        }

        Assert.Equal(["body", "prompt", "too-long"], results.Keys.Order(StringComparer.Ordinal));
        foreach (var id in (string[])["prompt", "body"])
        {
            var result = results[id];
            Assert.Equal(ResultStatus.Succeeded, result.Status);
            Assert.Null(result.Error);
            Assert.Equal(ModelName, result.Answer!.Value.GetProperty("model").GetString());
            Assert.Equal("message", result.Answer.Value.GetProperty("type").GetString());
            Assert.False(string.IsNullOrEmpty(result.Text), $"{id} has no text: {result.Line}");
            Assert.True(result.Usage is { InputTokens: > 0, OutputTokens: > 0 }, $"{id} has no usage: {result.Line}");
            Assert.Equal(id, result.Line.GetProperty("custom_id").GetString());
        }

        // The prompt asked for the default answer length; the body for its own.
        Assert.True(results["body"].Usage!.OutputTokens <= 16, $"body answered {results["body"].Usage!.OutputTokens} tokens");

        var failed = results["too-long"];
        Assert.Equal(ResultStatus.Failed, failed.Status);
        Assert.Null(failed.Answer);
        Assert.Null(failed.Text);
        Assert.Equal("invalid_request_error", failed.Error!.Code);
        Assert.Contains("context", failed.Error.Message, StringComparison.Ordinal);
        Assert.Equal("errored", failed.Line.GetProperty("result").GetProperty("type").GetString());

        var one = await client.GetResultAsync(created.Id, "body", Ct);
        Assert.Equal(results["body"].Line.GetRawText(), one!.Line.GetRawText());
        Assert.Equal(ResultStatus.Failed, (await client.Batch(created.Id).ResultsAsync(Ct).FirstAsync(r => r.CustomId == "too-long", Ct)).Status);
        Assert.Null(await client.GetResultAsync(created.Id, "no-such-request", Ct));

        using var folder = new TempDirectory();
        Assert.Equal(3, await client.ExportResultsAsync(created.Id, folder.File("results.jsonl"), Ct));
        Assert.Equal(3, (await File.ReadAllLinesAsync(folder.File("results.jsonl"), Ct)).Length);
    }

    [Fact]
    public async Task ACreate_CarriesItsIdempotencyKey_SoRepeatingItReturnsTheFirstBatch()
    {
        await using var server = await RunningServer.StartAsync();
        using var client = Client(server);
        var batch = new NewBatch { Model = ModelName, IdempotencyKey = "anthropic-create-once", Requests = [BatchItem.FromPrompt("only", ShortPrompt)] };

        var first = await client.CreateBatchAsync(batch, Ct);
        var again = await client.CreateBatchAsync(batch, Ct);

        Assert.Equal(first.Id, again.Id);
        Assert.Equal([first.Id], await client.ListBatchesAsync(Ct).Select(b => b.Id).ToListAsync(Ct));
    }

    [Fact]
    public async Task Results_BeforeTheBatchHasEnded_ThrowClearly_AndCancelKeepsWhatFinished()
    {
        await using var server = await RunningServer.StartAsync(Slow);
        using var client = Client(server);
        const int total = 30;
        var created = await client.CreateBatchAsync(new NewBatch
        {
            Model = ModelName,
            Requests = [.. Enumerable.Range(0, total).Select(i => BatchItem.FromPrompt($"r{i}", ShortPrompt))],
        }, Ct);
        Assert.Equal(BatchStatus.InProgress, created.Status);

        var early = await Assert.ThrowsAsync<BatchNotEndedException>(async () =>
        {
            await foreach (var _ in client.GetResultsAsync(created.Id, Ct))
            {
            }
        });
        Assert.Contains(created.Id, early.Message, StringComparison.Ordinal);
        Assert.Contains("once it has ended", early.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<BatchNotEndedException>(() => client.GetResultAsync(created.Id, "r0", Ct));

        // The batch says cancelling while the dispatcher still holds leased requests, or cancelled at
        // once when it held none at that moment (a loaded machine may not have claimed any yet).
        var canceling = await client.CancelBatchAsync(created.Id, Ct);
        Assert.Equal(created.Id, canceling.Id);
        Assert.True(canceling.Status is BatchStatus.Cancelling or BatchStatus.Cancelled, canceling.Status.ToString());
        Assert.Equal(canceling.Status == BatchStatus.Cancelled, canceling.HasEnded);

        var completion = await client.Batch(created.Id).WaitAsync(timeout: TimeSpan.FromMinutes(1), cancellationToken: Ct);
        Assert.False(completion.TimedOut);
        var ended = completion.Batch;
        Assert.Equal(BatchStatus.Cancelled, ended.Status);
        Assert.Equal(total, ended.Total);
        Assert.Equal(total, ended.Finished);
        Assert.True(ended.Failed > 0, "nothing was cancelled");
        Assert.NotNull(ended.EndedAt);

        // Cancelling an ended batch answers it as it is.
        Assert.Equal(BatchStatus.Cancelled, (await client.CancelBatchAsync(created.Id, Ct)).Status);

        var results = await client.GetResultsAsync(created.Id, Ct).ToListAsync(Ct);
        Assert.Equal(total, results.Count);
        Assert.Equal(ended.Succeeded, results.Count(r => r.Status == ResultStatus.Succeeded));
        var cancelled = results.Where(r => r.Status == ResultStatus.Cancelled).ToList();
        Assert.Equal(ended.Failed, cancelled.Count);
        Assert.All(cancelled, r =>
        {
            Assert.Null(r.Answer);
            Assert.Equal("batch_cancelled", r.Error!.Code);
            Assert.Equal("canceled", r.Line.GetProperty("result").GetProperty("type").GetString());
        });
    }

    [Fact]
    public async Task Listing_FollowsThePagesNewestFirst_AndSeesOnlyTheCallersBatches()
    {
        await using var server = await RunningServer.StartAsync();
        using var client = Client(server);
        using var other = Client(server, RunningServer.OtherKey);

        // One more than a page of 100, so the second page is fetched with after_id.
        var ids = new List<string>();
        for (var i = 0; i < 101; i++)
        {
            ids.Add((await client.CreateBatchAsync(new NewBatch { Model = ModelName, Requests = [BatchItem.FromPrompt("only", ShortPrompt)] }, Ct)).Id);
        }

        var listed = await client.ListBatchesAsync(Ct).ToListAsync(Ct);

        Assert.Equal(Enumerable.Reverse(ids), listed.Select(b => b.Id));
        Assert.All(listed, b => Assert.Equal(1, b.Total));
        Assert.Empty(await other.ListBatchesAsync(Ct).ToListAsync(Ct));
        var notFound = await Assert.ThrowsAsync<ShepherdApiException>(() => other.GetBatchAsync(ids[0], Ct));
        Assert.Equal(404, notFound.StatusCode);
    }

    [Fact]
    public async Task AFile_OfAnthropicAndOpenAILines_IsStreamedIntoOneCreate()
    {
        await using var server = await RunningServer.StartAsync();
        using var client = Client(server);
        using var folder = new TempDirectory();
        var path = folder.File("requests.jsonl");
        await File.WriteAllLinesAsync(path,
        [
            $$$"""{"custom_id":"anthropic-1","params":{"model":"{{{ModelName}}}","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}}""",
            "",
            $$$"""{"custom_id":"openai-1","method":"POST","url":"/v1/messages","body":{"model":"{{{ModelName}}}","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}}""",
            $$$"""{"custom_id":"anthropic-2","params":{"model":"{{{ModelName}}}","max_tokens":16,"messages":[{"role":"user","content":"hello"}]}}""",
        ], Ct);

        var created = await client.CreateBatchFromFileAsync(path, cancellationToken: Ct);
        Assert.Equal(3, created.Total);

        var completion = await client.WaitForCompletionAsync(created.Id, timeout: TimeSpan.FromMinutes(1), cancellationToken: Ct);
        Assert.True(completion.AllSucceeded, $"{completion.Batch}");
        var results = await client.GetResultsAsync(created.Id, Ct).ToListAsync(Ct);
        Assert.Equal(["anthropic-1", "anthropic-2", "openai-1"], results.Select(r => r.CustomId).Order(StringComparer.Ordinal));
        Assert.All(results, r => Assert.Equal(ModelName, r.Answer!.Value.GetProperty("model").GetString()));
    }

    [Fact]
    public async Task AFile_WithALineTheApiCannotTake_IsRefusedWithItsLineNumber_BeforeAnythingIsSent()
    {
        await using var server = await RunningServer.StartAsync();
        using var client = Client(server);
        using var folder = new TempDirectory();
        var path = folder.File("requests.jsonl");
        await File.WriteAllLinesAsync(path,
        [
            $$$"""{"custom_id":"fine","params":{"model":"{{{ModelName}}}","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}}""",
            $$$"""{"custom_id":"chat","method":"POST","url":"/v1/chat/completions","body":{"model":"{{{ModelName}}}","messages":[]}}""",
        ], Ct);
        var broken = folder.File("broken.jsonl");
        await File.WriteAllTextAsync(broken, "{\"custom_id\":\"a\",\"params\":{}}\n{not json\n", Ct);
        var empty = folder.File("empty.jsonl");
        await File.WriteAllTextAsync(empty, "\n\n", Ct);

        var wrongUrl = await Assert.ThrowsAsync<ArgumentException>(() => client.CreateBatchFromFileAsync(path, cancellationToken: Ct));
        Assert.Contains("line 2", wrongUrl.Message, StringComparison.Ordinal);
        Assert.Contains("/v1/chat/completions", wrongUrl.Message, StringComparison.Ordinal);
        Assert.Contains("line 2", (await Assert.ThrowsAsync<ArgumentException>(() => client.CreateBatchFromFileAsync(broken, cancellationToken: Ct))).Message, StringComparison.Ordinal);
        Assert.Contains("no request", (await Assert.ThrowsAsync<ArgumentException>(() => client.CreateBatchFromFileAsync(empty, cancellationToken: Ct))).Message, StringComparison.Ordinal);

        // What the API cannot keep is refused, not dropped.
        var metadata = new FileBatchOptions { Metadata = new Dictionary<string, string> { ["team"] = "search" } };
        await Assert.ThrowsAsync<ArgumentException>(() => client.CreateBatchFromFileAsync(path, metadata, Ct));
        await Assert.ThrowsAsync<ArgumentException>(() => client.CreateBatchAsync(new NewBatch { Endpoint = "/v1/chat/completions", Requests = [BatchItem.FromPrompt("a", ShortPrompt)] }, Ct));
        await Assert.ThrowsAsync<ArgumentException>(() => client.CreateBatchAsync(new NewBatch { CompletionWindow = TimeSpan.FromHours(1), Requests = [BatchItem.FromPrompt("a", ShortPrompt)] }, Ct));

        Assert.Empty(await client.ListBatchesAsync(Ct).ToListAsync(Ct));
    }

    [Fact]
    public async Task RetryFailed_IsNotSupported_BecauseTheApiKeepsNoRequestBodies()
    {
        await using var server = await RunningServer.StartAsync(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(2), ContextTokens = Context });
        using var client = Client(server);
        var created = await client.CreateBatchAsync(new NewBatch { Model = ModelName, Requests = [BatchItem.FromPrompt("too-long", LongPrompt)] }, Ct);
        var completion = await client.WaitForCompletionAsync(created.Id, timeout: TimeSpan.FromMinutes(1), cancellationToken: Ct);
        Assert.Equal(1, completion.Batch.Failed);

        var refused = await Assert.ThrowsAsync<NotSupportedException>(() => client.RetryFailedAsync(created.Id, Ct));
        Assert.Contains("original requests", refused.Message, StringComparison.Ordinal);
        Assert.Equal([created.Id], await client.ListBatchesAsync(Ct).Select(b => b.Id).ToListAsync(Ct));
    }

    [Theory]
    [InlineData("in_progress", null, 0, BatchStatus.InProgress)]
    [InlineData("canceling", "2026-01-01T00:01:00Z", 0, BatchStatus.Cancelling)]
    [InlineData("ended", null, 0, BatchStatus.Completed)]
    [InlineData("ended", "2026-01-01T00:01:00Z", 0, BatchStatus.Cancelled)]
    [InlineData("ended", "2026-01-01T00:01:00Z", 2, BatchStatus.Cancelled)]
    [InlineData("ended", null, 2, BatchStatus.Expired)]
    public void AMessageBatch_MapsToTheBatchStatuses(string processing, string? cancelInitiated, int expired, BatchStatus status)
    {
        var cancel = cancelInitiated is null ? "null" : $"\"{cancelInitiated}\"";
        using var json = JsonDocument.Parse($$"""
            {"id":"msgbatch_1","type":"message_batch","processing_status":"{{processing}}",
             "request_counts":{"processing":1,"succeeded":3,"errored":4,"canceled":5,"expired":{{expired}}},
             "created_at":"2026-01-01T00:00:00Z","expires_at":"2026-01-02T00:00:00Z","ended_at":null,
             "cancel_initiated_at":{{cancel}},"archived_at":null,"results_url":null}
            """);

        var batch = Wire.AnthropicBatch(json.RootElement);

        Assert.Equal(status, batch.Status);
        Assert.Equal((13L + expired, 3L, 9L + expired), (batch.Total, batch.Succeeded, batch.Failed));
        Assert.Equal(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero), batch.CreatedAt);
        Assert.Equal(new DateTimeOffset(2026, 1, 2, 0, 0, 0, TimeSpan.Zero), batch.ExpiresAt);
        Assert.Null(batch.EndedAt);
    }

    [Fact]
    public void AnExpiredResultLine_IsExpired_WithTheCodeTheOpenAIDialectGives()
    {
        using var json = JsonDocument.Parse("""{"custom_id":"late","result":{"type":"expired"}}""");

        var result = Wire.AnthropicResult(json.RootElement);

        Assert.Equal(("late", ResultStatus.Expired, "batch_expired"), (result.CustomId, result.Status, result.Error?.Code));
        Assert.Null(result.Answer);
    }

    private static ShepherdClient Client(RunningServer server, string key = RunningServer.Key) => new(new ShepherdClientOptions
    {
        BaseUrl = server.BaseUrl,
        ApiKey = key,
        Api = BatchApi.Anthropic,
        PollInitialDelay = TimeSpan.FromMilliseconds(50),
        PollMaxDelay = TimeSpan.FromMilliseconds(200),
    });

    /// <summary>Keeps every report as it is made (<see cref="Progress{T}"/> would report later, on another thread).</summary>
    private sealed class RecordingProgress : IProgress<BatchProgress>
    {
        public List<BatchProgress> Reports { get; } = [];

        public void Report(BatchProgress value) => Reports.Add(value);
    }
}
