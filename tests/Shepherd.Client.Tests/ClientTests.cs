using System.Text.Json.Nodes;
using Shepherd.Server.Tests;
using Shepherd.Simulator;
using Shepherd.Testing;

namespace Shepherd.Client.Tests;

/// <summary>The client against a real Shepherd server on 127.0.0.1 with the simulated provider.</summary>
public sealed class ClientTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromMinutes(1);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    internal static ShepherdClient ClientOf(RunningServer server, string key = RunningServer.Key, HttpClient? http = null, BatchApi api = BatchApi.Shepherd) => new(new ShepherdClientOptions
    {
        BaseUrl = server.BaseUrl,
        ApiKey = key,
        Api = api,
        PollInitialDelay = TimeSpan.FromMilliseconds(50),
        PollMaxDelay = TimeSpan.FromMilliseconds(200),
        RetryBaseDelay = TimeSpan.FromMilliseconds(10),
        RetryMaxDelay = TimeSpan.FromMilliseconds(100),
    }, http);

    /// <summary>
    /// A client of <paramref name="api"/> that must send nothing (a refusal made before anything is
    /// sent): <paramref name="handler"/> records whatever it does send, and answers it 500.
    /// </summary>
    internal static ShepherdClient SendingNothing(BatchApi api, out ScriptedHandler handler)
    {
        handler = new ScriptedHandler(ScriptedHandler.Json(System.Net.HttpStatusCode.InternalServerError, """{"error":{"message":"nothing should reach the API"}}"""));
        return new ShepherdClient(new ShepherdClientOptions { BaseUrl = new Uri("http://127.0.0.1:1"), ApiKey = "k", Api = api, MaxRetries = 0 }, new HttpClient(handler));
    }

    [Fact]
    public async Task AnInlineBatch_IsCreatedWaitedForAndItsResultsStreamed()
    {
        await using var server = await RunningServer.StartAsync(new SimulatorOptions { ContextTokens = 10 });
        using var client = ClientOf(server);
        var reports = new List<BatchProgress>();

        var batch = await client.CreateBatchAsync(new NewBatch
        {
            Model = "gpt-4o-mini",
            Metadata = new Dictionary<string, string> { ["job"] = "reviews" },
            Requests =
            [
                BatchItem.FromPrompt("a", "hi"),
                BatchItem.FromBody("b", new JsonObject { ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "yo" }), ["max_tokens"] = 5 }),
                BatchItem.FromPrompt("c", "a prompt that is far longer than the small context of this model"),
            ],
        }, Ct);
        var done = await client.WaitForCompletionAsync(batch.Id, new SynchronousProgress<BatchProgress>(reports.Add), cancellationToken: Ct);

        Assert.Equal((BatchStatus.Completed, false, 3L, 2L, 1L), (done.Batch.Status, done.TimedOut, done.Batch.Total, done.Batch.Succeeded, done.Batch.Failed));
        Assert.False(done.AllSucceeded);
        Assert.Equal("reviews", done.Batch.Metadata["job"]);
        Assert.Equal(100, reports[^1].Percent);
        Assert.Equal(TimeSpan.Zero, reports[^1].Eta);
        var results = await client.GetResultsAsync(batch.Id, Ct).ToListAsync(Ct);
        Assert.Equal(["a", "b", "c"], results.Select(r => r.CustomId));
        Assert.Equal([ResultStatus.Succeeded, ResultStatus.Succeeded, ResultStatus.Failed], results.Select(r => r.Status));
        Assert.False(string.IsNullOrEmpty(results[0].Text));
        Assert.True(results[0].Usage!.OutputTokens > 0);
        Assert.Equal((400, "context_length_exceeded"), (results[2].Error!.StatusCode, results[2].Error!.Code));
        Assert.Equal("b", (await client.GetResultAsync(batch.Id, "b", Ct))!.CustomId);
        Assert.Null(await client.GetResultAsync(batch.Id, "nope", Ct));
    }

    [Fact]
    public async Task RetryFailed_MakesOneLinkedBatchOfTheFailedRequests()
    {
        await using var server = await RunningServer.StartAsync(new SimulatorOptions { ContextTokens = 10 });
        using var client = ClientOf(server);
        var batch = await client.CreateBatchAsync(new NewBatch
        {
            Model = "m",
            Requests = [BatchItem.FromPrompt("ok", "hi"), BatchItem.FromPrompt("bad", "a prompt that is far longer than the small context of this model")],
        }, Ct);
        await client.WaitForCompletionAsync(batch.Id, cancellationToken: Ct);

        var retry = (await client.Batch(batch.Id).RetryFailedAsync(Ct))!;
        var again = (await client.RetryFailedAsync(batch.Id, Ct))!;

        Assert.Equal(retry.Id, again.Id);
        Assert.Equal(batch.Id, retry.Metadata["retry_of"]);
        Assert.Equal(1, retry.Total);
        await client.WaitForCompletionAsync(retry.Id, cancellationToken: Ct);
        Assert.Equal(["bad"], await client.GetResultsAsync(retry.Id, Ct).Select(r => r.CustomId).ToListAsync(Ct));
    }

    [Fact]
    public async Task AFileBatch_IsUploadedCreatedAndExported_AndAHandleWorksFromItsIdAlone()
    {
        await using var server = await RunningServer.StartAsync();
        using var folder = new TempDirectory();
        var input = BatchFiles.Write(folder.File("in.jsonl"), BatchFiles.OpenAIChat(25));
        using var first = ClientOf(server);
        var batch = await first.CreateBatchFromFileAsync(input, new FileBatchOptions { Metadata = new Dictionary<string, string> { ["source"] = "file" } }, Ct);

        using var other = ClientOf(server);
        var handle = other.Batch(batch.Id);
        var done = await handle.WaitAsync(cancellationToken: Ct);
        var lines = await handle.ExportResultsAsync(folder.File("out.jsonl"), Ct);

        Assert.Equal(BatchStatus.Validating, batch.Status);
        Assert.NotNull(batch.InputFileId);
        Assert.True(done.AllSucceeded);
        Assert.Equal(25, lines);
        var exported = BatchFiles.ReadJsonl(folder.File("out.jsonl"));
        Assert.Equal(25, exported.Count);
        Assert.All(exported, line => Assert.Equal("succeeded", line.GetProperty("status").GetString()));
        Assert.False(File.Exists(folder.File("out.jsonl.partial")));
    }

    [Fact]
    public async Task Listing_WalksEveryPage_AndShowsOnlyTheKeysOwnBatches()
    {
        await using var server = await RunningServer.StartAsync();
        using var client = ClientOf(server);
        using var other = ClientOf(server, RunningServer.OtherKey);
        var created = new List<string>();
        for (var i = 0; i < 103; i++)
        {
            created.Add((await client.CreateBatchAsync(new NewBatch { Model = "m", Requests = [BatchItem.FromPrompt("x", "p")] }, Ct)).Id);
        }

        var listed = await client.ListBatchesAsync(Ct).Select(b => b.Id).ToListAsync(Ct);

        Assert.Equal(Enumerable.Reverse(created), listed);
        Assert.Empty(await other.ListBatchesAsync(Ct).ToListAsync(Ct));
        var error = await Assert.ThrowsAsync<ShepherdApiException>(() => other.GetBatchAsync(created[0], Ct));
        Assert.Equal(404, error.StatusCode);
    }

    [Fact]
    public async Task ACreateWhoseAnswerIsLost_IsRetried_AndMakesOneBatch()
    {
        await using var server = await RunningServer.StartAsync();
        using var dropping = new DropFirstAnswer(HttpMethod.Post, "/v1/batches");
        using var http = new HttpClient(dropping);
        using var client = ClientOf(server, http: http);

        var batch = await client.CreateBatchAsync(new NewBatch { Model = "m", Requests = [BatchItem.FromPrompt("a", "p"), BatchItem.FromPrompt("b", "q")] }, Ct);

        Assert.Equal(2, dropping.Sent);
        var all = await client.ListBatchesAsync(Ct).ToListAsync(Ct);
        Assert.Equal(batch.Id, Assert.Single(all).Id);
    }

    [Fact]
    public async Task Cancelling_KeepsWhatFinished()
    {
        await using var server = await RunningServer.StartAsync(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(5), RequestsPerMinute = 600 });
        using var client = ClientOf(server);
        var batch = await client.CreateBatchAsync(new NewBatch { Model = "m", Requests = [.. Enumerable.Range(0, 100).Select(i => BatchItem.FromPrompt($"r{i}", "p"))] }, Ct);
        await client.WaitForCompletionAsync(batch.Id, new SynchronousProgress<BatchProgress>(_ => { }), TimeSpan.FromMilliseconds(300), Ct);

        await client.CancelBatchAsync(batch.Id, Ct);
        var done = await client.WaitForCompletionAsync(batch.Id, cancellationToken: Ct);

        Assert.Equal(BatchStatus.Cancelled, done.Batch.Status);
        Assert.Equal(100, done.Batch.Succeeded + done.Batch.Failed);
        var statuses = await client.GetResultsAsync(batch.Id, Ct).Select(r => r.Status).ToListAsync(Ct);
        Assert.Equal(done.Batch.Succeeded, statuses.Count(s => s == ResultStatus.Succeeded));
        Assert.Contains(ResultStatus.Cancelled, statuses);
    }

    [Fact]
    public async Task AWait_RidesOutAServerRestart_ReportsReconnecting_AndCompletes()
    {
        var server = await RunningServer.StartAsync(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(1500) });
        try
        {
            using var client = ClientOf(server);
            var batch = await client.CreateBatchAsync(new NewBatch { Model = "gpt-4o-mini", Requests = [BatchItem.FromPrompt("only", "hello")] }, Ct);
            var seen = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var reconnecting = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var reports = new List<BatchProgress>();
            var progress = new SynchronousProgress<BatchProgress>(p =>
            {
                lock (reports)
                {
                    reports.Add(p);
                }

                (p.Reconnecting ? reconnecting : seen).TrySetResult();
            });

            var wait = client.WaitForCompletionAsync(batch.Id, progress, Ct);
            await seen.Task.WaitAsync(Patience, Ct);

            // Down until the wait has noticed, then back where it was, on the same store.
            server = await server.RestartAsync(() => reconnecting.Task.WaitAsync(Patience, Ct), samePort: true);
            var done = await wait.WaitAsync(Patience, Ct);

            Assert.Equal((BatchStatus.Completed, false, 1L), (done.Batch.Status, done.TimedOut, done.Batch.Succeeded));
            lock (reports)
            {
                Assert.Contains(reports, r => r.Reconnecting);
                Assert.False(reports[^1].Reconnecting);
            }

            // Calls after the outage are not held back by a breaker the wait's failed looks opened.
            Assert.Equal(BatchStatus.Completed, (await client.GetBatchAsync(batch.Id, Ct)).Status);
        }
        finally
        {
            await server.DisposeAsync();
        }
    }

    /// <summary>Forwards calls to the server, but loses the answer of the first call of one route, as a dropped connection would.</summary>
    [Theory]
    [InlineData("v1")]
    [InlineData("v1/")]
    public async Task ABaseUrlEndingInV1_IsTheSameRoot_NotAV1V1Path(string suffix)
    {
        await using var server = await RunningServer.StartAsync();
        using var client = new ShepherdClient(new ShepherdClientOptions { BaseUrl = new Uri(server.BaseUrl, suffix), ApiKey = RunningServer.Key });

        var batch = await client.CreateBatchAsync(new NewBatch { Model = "gpt-4o-mini", Requests = [BatchItem.FromPrompt("a", "hi")] }, Ct);

        Assert.Equal(server.BaseUrl, client.Options.BaseUrl);
        Assert.Equal(batch.Id, (await client.GetBatchAsync(batch.Id, Ct)).Id);
    }

    [Fact]
    public void ABaseUrlWithAQuery_IsRefused_NamingTheRootWanted()
    {
        var refused = Assert.Throws<ArgumentException>(() => new ShepherdClient(new ShepherdClientOptions { BaseUrl = new Uri("http://127.0.0.1:8080/v1?key=1") }));

        Assert.Contains("such as http://127.0.0.1:8080/v1", refused.Message, StringComparison.Ordinal);
    }

    private sealed class DropFirstAnswer(HttpMethod method, string path) : DelegatingHandler(new SocketsHttpHandler())
    {
        private int _sent;

        public int Sent => _sent;

        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            var response = await base.SendAsync(request, cancellationToken);
            if (request.Method == method && request.RequestUri!.AbsolutePath == path && Interlocked.Increment(ref _sent) == 1)
            {
                response.Dispose();
                throw new HttpRequestException("The connection was reset before the answer arrived.");
            }

            return response;
        }
    }
}

/// <summary>Reports on the caller's thread, so a test sees every report before the wait returns.</summary>
internal sealed class SynchronousProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}
