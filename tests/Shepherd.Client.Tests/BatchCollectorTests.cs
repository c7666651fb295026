using System.Collections.Concurrent;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Time.Testing;
using Shepherd.Server.Tests;
using Shepherd.Simulator;
using Shepherd.Testing;

namespace Shepherd.Client.Tests;

/// <summary>The batch collector against a real Shepherd server on 127.0.0.1 with the simulated provider.</summary>
public sealed class BatchCollectorTests
{
    private const string Model = "gpt-4o-mini";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static readonly TimeSpan Patience = TimeSpan.FromMinutes(1);

    private static ShepherdClient ClientOf(RunningServer server, HttpClient? http = null, TimeProvider? time = null) => new(new ShepherdClientOptions
    {
        BaseUrl = server.BaseUrl,
        ApiKey = RunningServer.Key,
        PollInitialDelay = TimeSpan.FromMilliseconds(50),
        PollMaxDelay = TimeSpan.FromMilliseconds(200),
        RetryBaseDelay = TimeSpan.FromMilliseconds(10),
        RetryMaxDelay = TimeSpan.FromMilliseconds(100),
        TimeProvider = time ?? TimeProvider.System,
    }, http);

    private static async Task<List<Batch>> BatchesOnServerAsync(ShepherdClient client) => await client.ListBatchesAsync(Ct).ToListAsync(Ct);

    /// <summary>The looks of a wait: a plain one, then one the server holds until the batch ends.</summary>
    private static readonly string[] HeldLooks = ["", "?wait=60"];

    [Fact]
    public async Task ACallersAnswer_ComesWhenItsBatchEnds_NotAtTheNextPoll()
    {
        await using var server = await RunningServer.StartAsync();
        using var spy = new Spy();
        using var http = new HttpClient(spy);

        // Looks a minute apart: the answer can only come in time if the server says when the batch ended.
        using var client = new ShepherdClient(new ShepherdClientOptions
        {
            BaseUrl = server.BaseUrl,
            ApiKey = RunningServer.Key,
            PollInitialDelay = TimeSpan.FromMinutes(1),
            PollMaxDelay = TimeSpan.FromMinutes(1),
        }, http);
        await using var collector = new BatchCollector(client, new BatchCollectorOptions { Model = Model, MaxAge = TimeSpan.FromHours(1) });

        var answer = collector.AddAsync("hello", Ct);
        await collector.FlushAsync(Ct);
        var result = await answer.WaitAsync(TimeSpan.FromSeconds(30), Ct);

        Assert.Equal(ResultStatus.Succeeded, result.Status);
        // A first plain look (which may already see the end), then at most one held look.
        Assert.InRange(spy.Looks.Count, 1, 2);
        Assert.Equal(HeldLooks[..spy.Looks.Count], spy.Looks);
    }

    [Fact]
    public async Task AWrongKey_FailsTheCallersAtTheirFirstRequest_NotWhenTheBatchIsFlushed()
    {
        await using var server = await RunningServer.StartAsync();
        using var client = new ShepherdClient(new ShepherdClientOptions { BaseUrl = server.BaseUrl, ApiKey = "not-a-gateway-key" });
        await using var collector = new BatchCollector(client, new BatchCollectorOptions { Model = Model, MaxAge = TimeSpan.FromHours(1) });

        var first = await Assert.ThrowsAsync<BatchCollectorException>(() => collector.AddAsync("hello", Ct).WaitAsync(TimeSpan.FromSeconds(30), Ct));
        var later = await Assert.ThrowsAsync<BatchCollectorException>(() => collector.AddAsync("again", Ct));

        Assert.Contains("refused the client's key", first.Message, StringComparison.Ordinal);
        Assert.Equal(401, Assert.IsType<ShepherdApiException>(later.InnerException).StatusCode);
    }

    [Fact]
    public async Task FiftyConcurrentCallers_EachGetTheirOwnAnswer_InBatchesOfTheFlushSize()
    {
        await using var server = await RunningServer.StartAsync();
        using var client = ClientOf(server);
        var collector = new BatchCollector(client, new BatchCollectorOptions { Model = Model, MaxBatchSize = 100, MaxAge = TimeSpan.FromHours(1) });
        await using (collector)
        {
            // 50 callers, each asking 20 questions of its own at once.
            var callers = Enumerable.Range(0, 50).Select(caller => Task.Run(async () =>
            {
                var prompts = Enumerable.Range(0, 20).Select(i => $"Caller {caller}, question {i}: what do you think of item {(caller * 20) + i}?").ToList();
                var results = await Task.WhenAll(prompts.Select(p => collector.AddAsync(p, Ct)));
                return prompts.Zip(results).ToList();
            }, Ct)).ToList();
            var answered = (await Task.WhenAll(callers).WaitAsync(Patience, Ct)).SelectMany(c => c).ToList();

            Assert.Equal(1000, answered.Count);
            Assert.All(answered, a => Assert.Equal(ResultStatus.Succeeded, a.Second.Status));
            Assert.Equal(1000, answered.Select(a => a.Second.CustomId).Distinct().Count());
            Assert.Equal(1000, answered.Select(a => a.Second).Distinct(ReferenceEqualityComparer.Instance).Count());

            // Exactly ceil(1000 / 100) batches, each full: flushed by size, never by age.
            var batches = await BatchesOnServerAsync(client);
            Assert.Equal(10, batches.Count);
            Assert.All(batches, b => Assert.Equal(100, b.Total));
            Assert.Equal(0, collector.PendingCount);

            // The simulator answers a request by a hash of its body: the same prompts, sent as one
            // plain batch, must give each caller's prompt the very answer that caller got.
            var reference = await client.CreateBatchAsync(new NewBatch
            {
                Model = Model,
                Requests = [.. answered.Select((a, i) => BatchItem.FromPrompt($"ref-{i}", a.First))],
            }, Ct);
            await client.WaitForCompletionAsync(reference.Id, cancellationToken: Ct);
            var expected = await client.GetResultsAsync(reference.Id, Ct).ToDictionaryAsync(r => r.CustomId, cancellationToken: Ct);
            for (var i = 0; i < answered.Count; i++)
            {
                var want = expected[$"ref-{i}"];
                var got = answered[i].Second;
                Assert.Equal(want.Answer!.Value.GetProperty("id").GetString(), got.Answer!.Value.GetProperty("id").GetString());
                Assert.Equal(want.Text, got.Text);
            }

            Assert.Equal(1000, answered.Select(a => a.Second.Answer!.Value.GetProperty("id").GetString()).Distinct().Count());
        }
    }

    [Fact]
    public async Task Bodies_AreSentAsGiven_AndEachCallerGetsItsOwn()
    {
        await using var server = await RunningServer.StartAsync();
        using var client = ClientOf(server);
        await using var collector = new BatchCollector(client, new BatchCollectorOptions { Model = Model, MaxBatchSize = 10 });

        // The simulator names the body's model in its answer: a model per caller marks whose answer it is.
        var bodies = Enumerable.Range(0, 30).Select(i => new JsonObject
        {
            ["model"] = $"model-of-caller-{i}",
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = $"hello from {i}" }),
        }).ToList();
        var tasks = bodies.Select(b => collector.AddAsync(b, Ct)).ToList();
        bodies.ForEach(b => b["model"] = "changed after the add");

        var results = await Task.WhenAll(tasks).WaitAsync(Patience, Ct);
        for (var i = 0; i < results.Length; i++)
        {
            Assert.Equal(ResultStatus.Succeeded, results[i].Status);
            Assert.Equal($"model-of-caller-{i}", results[i].Answer!.Value.GetProperty("model").GetString());
        }
    }

    [Fact]
    public async Task ABatchThatDoesNotEndInTime_FaultsItsCallers_AndCountsAsTooSlow()
    {
        await using var server = await RunningServer.StartAsync(new SimulatorOptions { Latency = TimeSpan.FromSeconds(2) });
        using var client = ClientOf(server);
        await using var collector = new BatchCollector(client, new BatchCollectorOptions
        {
            Model = Model,
            MaxBatchSize = 100,
            MaxAge = TimeSpan.FromMilliseconds(50),
            WaitTimeout = TimeSpan.FromMilliseconds(300),
            TargetLatency = TimeSpan.FromHours(1),
        });

        var tasks = Enumerable.Range(0, 3).Select(i => collector.AddAsync($"prompt {i}", Ct)).ToList();

        foreach (var task in tasks)
        {
            var ex = await Assert.ThrowsAsync<BatchCollectorException>(() => task.WaitAsync(Patience, Ct));
            Assert.Contains("did not end within", ex.Message, StringComparison.Ordinal);
            Assert.Contains("goes on on the server", ex.Message, StringComparison.Ordinal);
            Assert.NotNull(ex.BatchId);
        }

        // Once the batch has let go of its slot (disposal waits for that), the size has shrunk.
        await collector.DisposeAsync();
        Assert.Equal(75, collector.FlushSize);
    }

    [Fact]
    public async Task BySize_FullBatchesGoAtOnce_TheRestWaitsForFlushAsync()
    {
        await using var server = await RunningServer.StartAsync();
        using var spy = new Spy();
        using var http = new HttpClient(spy);
        using var client = ClientOf(server, http);
        await using var collector = new BatchCollector(client, new BatchCollectorOptions { Model = Model, MaxBatchSize = 100, MaxAge = TimeSpan.FromHours(1) });

        var tasks = Enumerable.Range(0, 250).Select(i => collector.AddAsync($"prompt {i}", Ct)).ToList();
        await Task.WhenAll(tasks.Take(200)).WaitAsync(Patience, Ct);

        Assert.Equal(50, collector.PendingCount);
        Assert.DoesNotContain(tasks.Skip(200), t => t.IsCompleted);
        Assert.Equal([100, 100], (await BatchesOnServerAsync(client)).Select(b => (int)b.Total));

        await collector.FlushAsync(Ct);
        var rest = await Task.WhenAll(tasks.Skip(200)).WaitAsync(Patience, Ct);

        Assert.All(rest, r => Assert.Equal(ResultStatus.Succeeded, r.Status));
        Assert.Equal([50, 100, 100], (await BatchesOnServerAsync(client)).Select(b => (int)b.Total).Order());

        // One idempotency key per flush.
        Assert.Equal(3, spy.Creates.Select(c => c.Key).Distinct().Count());
        Assert.DoesNotContain(spy.Creates, c => c.Key is null);
    }

    [Fact]
    public async Task ByAge_TheOldestRequestSetsTheClock_OnTheClientsTimeProvider()
    {
        await using var server = await RunningServer.StartAsync();
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
        using var client = ClientOf(server, time: time);
        await using var collector = new BatchCollector(client, new BatchCollectorOptions
        {
            Model = Model,
            MaxAge = TimeSpan.FromSeconds(5),
            WaitTimeout = TimeSpan.FromHours(1),
        });

        var first = new[] { collector.AddAsync("one", Ct), collector.AddAsync("two", Ct) };
        time.Advance(TimeSpan.FromSeconds(3));
        var late = collector.AddAsync("three", Ct);
        time.Advance(TimeSpan.FromSeconds(1.9));

        Assert.Equal((3, 0), (collector.PendingCount, collector.BatchesInFlight));
        Assert.Empty(await BatchesOnServerAsync(client));

        // The first request turns 5 s old: all three go, the late one too.
        time.Advance(TimeSpan.FromSeconds(0.1));
        Assert.Equal((0, 1), (collector.PendingCount, collector.BatchesInFlight));

        // The client now polls on the fake clock: move it, but no faster than the real server works.
        var all = Task.WhenAll([.. first, late]);
        await time.RunUntilAsync(all, TimeSpan.FromMilliseconds(50), Throttle(TimeSpan.FromMilliseconds(5)));

        Assert.All(await all, r => Assert.Equal(ResultStatus.Succeeded, r.Status));
        Assert.Equal([3L], (await BatchesOnServerAsync(client)).Select(b => b.Total));
    }

    [Fact]
    public async Task AdaptiveFlushSize_ShrinksTowardsATargetItCannotMeet()
    {
        await using var server = await RunningServer.StartAsync();
        using var spy = new Spy();
        using var http = new HttpClient(spy);
        using var client = ClientOf(server, http);
        await using var collector = new BatchCollector(client, new BatchCollectorOptions
        {
            Model = Model,
            MaxBatchSize = 20,
            MinBatchSize = 5,
            MaxAge = TimeSpan.FromHours(1),
            MaxConcurrentBatches = 1,
            TargetLatency = TimeSpan.FromMilliseconds(1),
        });
        Assert.Equal(20, collector.FlushSize);

        var tasks = Enumerable.Range(0, 80).Select(i => collector.AddAsync($"prompt {i}", Ct)).ToList();
        await collector.FlushAsync(Ct);
        await Task.WhenAll(tasks).WaitAsync(Patience, Ct);

        // Every batch took longer than 1 ms: each next one is 3/4 of the last, down to the floor.
        Assert.Equal([20, 15, 11, 8, 6, 5, 5, 5, 5], spy.Creates.Select(c => c.Requests));
        Assert.Equal(5, collector.FlushSize);
    }

    [Fact]
    public async Task AdaptiveFlushSize_NeverGrowsPastTheCeiling()
    {
        await using var server = await RunningServer.StartAsync();
        using var client = ClientOf(server);
        await using var collector = new BatchCollector(client, new BatchCollectorOptions
        {
            Model = Model,
            MaxBatchSize = 50,
            MinBatchSize = 5,
            TargetLatency = TimeSpan.FromHours(1),
        });

        var tasks = Enumerable.Range(0, 50).Select(i => collector.AddAsync($"prompt {i}", Ct)).ToList();
        await Task.WhenAll(tasks).WaitAsync(Patience, Ct);

        // Far faster than the target, but already at the ceiling.
        Assert.Equal(50, collector.FlushSize);
    }

    [Theory]
    [InlineData(100.0, 2000, 75.0)]     // too slow: x 0.75
    [InlineData(100.0, 1001, 75.0)]
    [InlineData(100.0, 1000, 100.0)]    // on target: kept
    [InlineData(100.0, 500, 100.0)]     // exactly half: kept
    [InlineData(100.0, 499, 125.0)]     // faster than half the target: x 1.25
    [InlineData(11.0, 5000, 10.0)]      // never below the floor
    [InlineData(900.0, 1, 1000.0)]      // never above the ceiling
    public void Adjust_FollowsTheRule(double size, int observedMs, double expected) =>
        Assert.Equal(expected, BatchCollector.Adjust(size, TimeSpan.FromMilliseconds(observedMs), TimeSpan.FromSeconds(1), 10, 1000));

    [Theory]
    [InlineData(1000.0)]
    [InlineData(10.0)]
    public void Adjust_ConvergesToASizeWhoseLatencyMeetsTheTarget(double start)
    {
        // A batch takes 200 ms plus 2 ms a request: sizes 150 to 400 meet a target of 1 s (between 0.5 and 1 s).
        static TimeSpan Latency(double size) => TimeSpan.FromMilliseconds(200 + (2 * Math.Round(size)));
        var size = start;
        for (var i = 0; i < 50; i++)
        {
            size = BatchCollector.Adjust(size, Latency(size), TimeSpan.FromSeconds(1), 10, 1000);
        }

        Assert.InRange(Latency(size), TimeSpan.FromMilliseconds(500), TimeSpan.FromSeconds(1));
        Assert.Equal(size, BatchCollector.Adjust(size, Latency(size), TimeSpan.FromSeconds(1), 10, 1000));
    }

    [Fact]
    public async Task ABatchTheServerRefuses_FaultsItsCallersWithTheServersMessage()
    {
        await using var server = await RunningServer.StartAsync();
        using var client = ClientOf(server);
        await using var collector = new BatchCollector(client, new BatchCollectorOptions { Model = Model, Endpoint = "/v1/nowhere", MaxAge = TimeSpan.FromHours(1) });

        var tasks = Enumerable.Range(0, 5).Select(i => collector.AddAsync($"prompt {i}", Ct)).ToList();
        await collector.FlushAsync(Ct);

        foreach (var task in tasks)
        {
            var ex = await Assert.ThrowsAsync<BatchCollectorException>(() => task.WaitAsync(Patience, Ct));
            Assert.Contains("could not be created", ex.Message, StringComparison.Ordinal);
            Assert.Contains("endpoint \"/v1/nowhere\" is not one of", ex.Message, StringComparison.Ordinal);
            Assert.Null(ex.BatchId);
            Assert.Equal(400, Assert.IsType<ShepherdApiException>(ex.InnerException).StatusCode);
        }

        Assert.Empty(await BatchesOnServerAsync(client));
        Assert.Equal(0, collector.BatchesInFlight);
    }

    [Fact]
    public async Task AMissingResult_FaultsThatCallerOnly()
    {
        await using var server = await RunningServer.StartAsync();
        using var spy = new Spy();
        using var http = new HttpClient(spy);
        using var client = ClientOf(server, http);
        await using var collector = new BatchCollector(client, new BatchCollectorOptions { Model = Model, MaxBatchSize = 4 });

        // The results of the batch lose their second line on the way.
        spy.RewriteResults = page =>
        {
            var data = page["data"]!.AsArray();
            data.RemoveAt(1);
            return page;
        };
        var tasks = Enumerable.Range(0, 4).Select(i => collector.AddAsync($"prompt {i}", Ct)).ToList();

        var ex = await Assert.ThrowsAsync<BatchCollectorException>(() => tasks[1].WaitAsync(Patience, Ct));
        Assert.Contains("without a result for the request", ex.Message, StringComparison.Ordinal);
        Assert.NotNull(ex.BatchId);
        Assert.Contains(ex.BatchId, ex.Message, StringComparison.Ordinal);
        var others = await Task.WhenAll(tasks[0], tasks[2], tasks[3]).WaitAsync(Patience, Ct);
        Assert.All(others, r => Assert.Equal(ResultStatus.Succeeded, r.Status));
    }

    [Fact]
    public async Task ALostCreateAnswer_IsRetriedWithTheSameKey_AndMakesOneBatch()
    {
        await using var server = await RunningServer.StartAsync();
        using var spy = new Spy { DropCreateAnswers = 1 };
        using var http = new HttpClient(spy);
        using var client = ClientOf(server, http);
        await using var collector = new BatchCollector(client, new BatchCollectorOptions { Model = Model, MaxBatchSize = 3 });

        var results = await Task.WhenAll(Enumerable.Range(0, 3).Select(i => collector.AddAsync($"prompt {i}", Ct))).WaitAsync(Patience, Ct);

        Assert.All(results, r => Assert.Equal(ResultStatus.Succeeded, r.Status));
        Assert.Equal(2, spy.Creates.Count);
        Assert.Single(spy.Creates.Select(c => c.Key).Distinct());
        Assert.Single(await BatchesOnServerAsync(client));
    }

    [Fact]
    public async Task ACallersCancellation_OnlyAbandonsItsWait()
    {
        await using var server = await RunningServer.StartAsync();
        using var client = ClientOf(server);
        await using var collector = new BatchCollector(client, new BatchCollectorOptions { Model = Model, MaxAge = TimeSpan.FromHours(1) });
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(Ct);

        var kept = collector.AddAsync("kept", Ct);
        var abandoned = collector.AddAsync("abandoned", cancel.Token);
        await cancel.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => abandoned);
        Assert.Equal(2, collector.PendingCount);
        await collector.FlushAsync(Ct);
        Assert.Equal(ResultStatus.Succeeded, (await kept.WaitAsync(Patience, Ct)).Status);
        Assert.Equal([2L], (await BatchesOnServerAsync(client)).Select(b => b.Total));
    }

    [Fact]
    public async Task WhenEverySlotIsBusy_OneFlushSizeQueues_AndFurtherAddsWaitForRoom()
    {
        await using var server = await RunningServer.StartAsync(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(300) });
        using var client = ClientOf(server);
        await using var collector = new BatchCollector(client, new BatchCollectorOptions
        {
            Model = Model,
            MaxBatchSize = 5,
            MaxConcurrentBatches = 1,
            MaxAge = TimeSpan.FromHours(1),
        });
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(Ct);

        var tasks = Enumerable.Range(0, 20).Select(i => collector.AddAsync($"prompt {i}", Ct)).ToList();
        var withdrawn = collector.AddAsync("never sent", cancel.Token);

        // 5 in the batch in flight, 5 queued for the next, 11 waiting for room.
        Assert.Equal((1, 16, 11), (collector.BatchesInFlight, collector.PendingCount, collector.WaitingCount));

        // Cancelling an add that waits for room withdraws it: it was never queued.
        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => withdrawn);
        Assert.Equal(10, collector.WaitingCount);

        var results = await Task.WhenAll(tasks).WaitAsync(Patience, Ct);
        Assert.All(results, r => Assert.Equal(ResultStatus.Succeeded, r.Status));
        Assert.Equal([5L, 5L, 5L, 5L], (await BatchesOnServerAsync(client)).Select(b => b.Total));
    }

    [Fact]
    public async Task Dispose_FlushesWhatIsPending_AndWaitsForItsResults()
    {
        await using var server = await RunningServer.StartAsync();
        using var client = ClientOf(server);
        var collector = new BatchCollector(client, new BatchCollectorOptions { Model = Model, MaxAge = TimeSpan.FromHours(1) });

        var tasks = Enumerable.Range(0, 3).Select(i => collector.AddAsync($"prompt {i}", Ct)).ToList();
        await collector.DisposeAsync().AsTask().WaitAsync(Patience, Ct);

        Assert.All(tasks, t => Assert.True(t.IsCompletedSuccessfully));
        Assert.All(await Task.WhenAll(tasks), r => Assert.Equal(ResultStatus.Succeeded, r.Status));
        Assert.Throws<ObjectDisposedException>(() => { _ = collector.AddAsync("late", Ct); });
        await collector.DisposeAsync();
    }

    [Fact]
    public async Task Dispose_WithABound_FailsTheCallersStillWaiting()
    {
        await using var server = await RunningServer.StartAsync(new SimulatorOptions { Latency = TimeSpan.FromSeconds(2) });
        using var client = ClientOf(server);
        var collector = new BatchCollector(client, new BatchCollectorOptions { Model = Model, MaxAge = TimeSpan.FromHours(1), DisposeTimeout = TimeSpan.FromMilliseconds(200) });

        var task = collector.AddAsync("slow", Ct);
        await collector.DisposeAsync().AsTask().WaitAsync(Patience, Ct);

        var ex = await Assert.ThrowsAsync<BatchCollectorException>(() => task);
        Assert.Contains("disposed before", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Options_AreChecked()
    {
        using var client = new ShepherdClient(new ShepherdClientOptions { BaseUrl = new Uri("http://127.0.0.1:1") });
        Assert.Throws<ArgumentOutOfRangeException>(() => new BatchCollector(client, new BatchCollectorOptions { MaxBatchSize = 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new BatchCollector(client, new BatchCollectorOptions { MaxAge = TimeSpan.Zero }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new BatchCollector(client, new BatchCollectorOptions { MaxConcurrentBatches = 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new BatchCollector(client, new BatchCollectorOptions { TargetLatency = TimeSpan.Zero }));
    }

    /// <summary>Lets the fake clock move by a step only after <paramref name="every"/> of real time.</summary>
    private static Func<bool> Throttle(TimeSpan every)
    {
        var last = TimeProvider.System.GetTimestamp();
        return () =>
        {
            if (TimeProvider.System.GetElapsedTime(last) < every)
            {
                return false;
            }

            last = TimeProvider.System.GetTimestamp();
            return true;
        };
    }

    /// <summary>Sees the client's calls: records its creates, can lose create answers and rewrite result pages.</summary>
    private sealed class Spy() : DelegatingHandler(new SocketsHttpHandler())
    {
        private int _dropCreateAnswers;

        public ConcurrentQueue<(int Requests, string? Key)> Creates { get; } = new();

        /// <summary>The query of each look at a batch (<c>GET /v1/batches/{id}</c>), such as <c>?wait=2</c>.</summary>
        public ConcurrentQueue<string> Looks { get; } = new();

        public int DropCreateAnswers
        {
            get => _dropCreateAnswers;
            init => _dropCreateAnswers = value;
        }

        public Func<JsonObject, JsonObject>? RewriteResults { get; set; }

        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            var path = request.RequestUri!.AbsolutePath;
            var create = request.Method == HttpMethod.Post && path == "/v1/batches";
            if (request.Method == HttpMethod.Get && path.StartsWith("/v1/batches/", StringComparison.Ordinal) && path.Count(c => c == '/') == 3)
            {
                Looks.Enqueue(request.RequestUri.Query);
            }
            if (create)
            {
                var body = JsonNode.Parse(await request.Content!.ReadAsStringAsync(cancellationToken))!;
                Creates.Enqueue((body["requests"]!.AsArray().Count, request.Headers.TryGetValues("Idempotency-Key", out var keys) ? keys.Single() : null));
            }

            var response = await base.SendAsync(request, cancellationToken);
            if (create && Interlocked.Decrement(ref _dropCreateAnswers) >= 0)
            {
                response.Dispose();
                throw new HttpRequestException("The answer was lost on the way back (test).");
            }

            if (RewriteResults is { } rewrite && request.Method == HttpMethod.Get && path.EndsWith("/results", StringComparison.Ordinal) && response.IsSuccessStatusCode)
            {
                var page = JsonNode.Parse(await response.Content.ReadAsStringAsync(cancellationToken))!.AsObject();
                response.Content = new StringContent(rewrite(page).ToJsonString(), Encoding.UTF8, "application/json");
            }

            return response;
        }
    }
}
