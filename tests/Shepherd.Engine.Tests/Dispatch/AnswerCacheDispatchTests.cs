using System.Diagnostics.Metrics;
using System.Net;
using Shepherd.Engine.Dispatch;
using Shepherd.Engine.Model;
using Shepherd.Engine.Pricing;
using Shepherd.Engine.Storage;
using Shepherd.Testing;

namespace Shepherd.Engine.Tests.Dispatch;

/// <summary>The dispatcher with an answer cache: what it has answered once is answered from the cache, not sent, at no cost.</summary>
public sealed class AnswerCacheDispatchTests : DispatchTestBase
{
    private const string Answer = """{"id":"c1","object":"chat.completion","model":"gpt-4.1-mini","choices":[],"usage":{"prompt_tokens":100,"completion_tokens":50,"total_tokens":150}}""";

    private async Task<AnswerCache> OpenCacheAsync(string path) => await SqliteAnswerCache.OpenAsync(path, 1 << 20, TimeSpan.FromDays(30), Time, Ct);

    /// <summary>A dispatcher with <paramref name="cache"/>, and the upstream it sends to, which answers every request with <see cref="Answer"/>.</summary>
    private (ScriptedHandler Handler, Dispatcher Dispatcher) Answering(AnswerCache? cache)
    {
        var handler = new ScriptedHandler(ScriptedHandler.Json(HttpStatusCode.OK, Answer));
        var dispatcher = CreateDispatcher(handler);
        dispatcher.AnswerCache = cache;
        return (handler, dispatcher);
    }

    [Fact]
    public async Task ARequestAnsweredBefore_IsAnsweredFromTheCache_NotSent_AtNoCost()
    {
        using var folder = new TempDirectory();
        await using var cache = await OpenCacheAsync(folder.File("answers.db"));
        var requests = BatchFiles.OpenAIChat(5);
        var (first, _) = await ImportAsync(5, prefix: "a-", requests: requests);
        var (handler, dispatcher) = Answering(cache);
        await RunToCompletionAsync(dispatcher, first);
        await Poll.UntilAsync(async () => (await cache.StatsAsync(Ct)).Entries == 5, TimeSpan.FromSeconds(10), Ct);

        var (second, _) = await ImportAsync(5, prefix: "b-", requests: requests);
        await RunToCompletionAsync(dispatcher, second);

        Assert.Equal(5, handler.Received.Count);
        var batch = (await Store.GetBatchAsync(second, Ct))!;
        var price = PriceTable.BuiltIn.Price("gpt-4.1-mini", 100, 50).Nanos;
        Assert.Equal((5L, 5L, 0L, 5 * price), (batch.Succeeded, batch.Cached, batch.CostNanos, batch.CacheSavedNanos));
        Assert.Equal(0, batch.Tiers.RealtimeSucceeded(batch));
        Assert.All(await ResultsAsync(second), result => Assert.Equal((ItemState.Succeeded, true, 0L, 200), (result.State, result.Result!.Cached, result.Result.CostNanos, result.Result.StatusCode!.Value)));
        Assert.All(await ResultsAsync(first), result => Assert.False(result.Result!.Cached));
    }

    [Fact]
    public async Task ATenantIsNeverAnswered_WithAnotherTenantsAnswers()
    {
        using var folder = new TempDirectory();
        await using var cache = await OpenCacheAsync(folder.File("answers.db"));
        var requests = BatchFiles.OpenAIChat(4);
        var (handler, dispatcher) = Answering(cache);

        await RunToCompletionAsync(dispatcher, (await ImportAsync(4, "a-", requests: requests, shape: b => b with { Owner = "acme" })).BatchId);
        await Poll.UntilAsync(async () => (await cache.StatsAsync(Ct)).Entries == 4, TimeSpan.FromSeconds(10), Ct);
        var (globex, _) = await ImportAsync(4, "b-", requests: requests, shape: b => b with { Owner = "globex" });
        await RunToCompletionAsync(dispatcher, globex);
        var (acme, _) = await ImportAsync(4, "c-", requests: requests, shape: b => b with { Owner = "acme" });
        await RunToCompletionAsync(dispatcher, acme);

        // acme's answers answer acme again, never globex, whose own were sent for.
        Assert.Equal(8, handler.Received.Count);
        Assert.Equal(0, (await Store.GetBatchAsync(globex, Ct))!.Cached);
        Assert.Equal(4, (await Store.GetBatchAsync(acme, Ct))!.Cached);
    }

    [Fact]
    public async Task ABatchWithTheCacheOff_SendsEverything_AndKeepsNothing()
    {
        using var folder = new TempDirectory();
        var path = folder.File("answers.db");
        var requests = BatchFiles.OpenAIChat(3);
        var (handler, dispatcher) = Answering(null);
        await using (var cache = await OpenCacheAsync(path))
        {
            dispatcher.AnswerCache = cache;
            await RunToCompletionAsync(dispatcher, (await ImportAsync(3, "a-", requests: requests, shape: b => b with { Cache = CacheUse.Off })).BatchId);
            await RunToCompletionAsync(dispatcher, (await ImportAsync(3, "b-", requests: requests, shape: b => b with { Cache = CacheUse.Off })).BatchId);
        }

        // Closing the cache writes what waited: nothing did.
        await using var reopened = await OpenCacheAsync(path);
        Assert.Equal(6, handler.Received.Count);
        Assert.Equal(0, (await reopened.StatsAsync(Ct)).Entries);
    }

    [Fact]
    public async Task ABatchThatDoesNotReplaySampling_SendsWhatAsksForIt_AndTakesTheRestFromTheCache()
    {
        using var folder = new TempDirectory();
        await using var cache = await OpenCacheAsync(folder.File("answers.db"));
        // Odd requests ask for sampling (a temperature above 0, or two choices); even ones do not (temperature 0, or none).
        string[] asks = [""" "temperature":0.7, """, """ "temperature":0, """, """ "n":2, """, ""];
        List<TestRequest> requests = [.. Enumerable.Range(0, 4).Select(i =>
        {
            var body = $$"""{"model":"gpt-4.1-mini",{{asks[i]}}"messages":[{"role":"user","content":"Review {{i}}"}]}""";
            return new TestRequest($"r{i}", body, $$"""{"custom_id":"r{{i}}","method":"POST","url":"/v1/chat/completions","body":{{body}}}""");
        })];
        var (handler, dispatcher) = Answering(cache);

        await RunToCompletionAsync(dispatcher, (await ImportAsync(4, "a-", requests: requests)).BatchId);
        await Poll.UntilAsync(async () => (await cache.StatsAsync(Ct)).Entries == 4, TimeSpan.FromSeconds(10), Ct);
        var (unsampled, _) = await ImportAsync(4, "b-", requests: requests, shape: b => b with { Cache = CacheUse.Unsampled });
        await RunToCompletionAsync(dispatcher, unsampled);
        var (replayed, _) = await ImportAsync(4, "c-", requests: requests);
        await RunToCompletionAsync(dispatcher, replayed);

        Assert.Equal(6, handler.Received.Count);
        Assert.Equal(["r0", "r2"], (await ResultsAsync(unsampled)).Where(r => !r.Result!.Cached).Select(r => r.CustomId));
        Assert.Equal(4, (await Store.GetBatchAsync(replayed, Ct))!.Cached);
    }

    [Fact]
    public async Task TheMetrics_CountTheRequestsAnsweredFromTheCache_AndWhatTheySaved_NotAsAnswersOfATier()
    {
        using var folder = new TempDirectory();
        await using var cache = await SqliteAnswerCache.OpenAsync(folder.File("answers.db"), 1 << 20, TimeSpan.FromDays(30), Time, Ct);
        var requests = BatchFiles.OpenAIChat(4);
        var dispatcher = CreateDispatcher(new ScriptedHandler(ScriptedHandler.Json(HttpStatusCode.OK, Answer)));
        dispatcher.AnswerCache = cache;
        using var meters = new OwnMeters();
        dispatcher.Telemetry = new DispatchTelemetry(meters, dispatcher);
        using var metrics = new Counters(meters);
        var (first, _) = await ImportAsync(4, prefix: "a-", requests: requests);
        await RunToCompletionAsync(dispatcher, first);
        await Poll.UntilAsync(async () => (await cache.StatsAsync(Ct)).Entries == 4, TimeSpan.FromSeconds(10), Ct);
        Assert.Equal((0d, 0d, 4d), (metrics.Read("shepherd.cache.hits"), metrics.Read("shepherd.cache.saved.usd"), metrics.Read("shepherd.tier.requests")));

        var (second, _) = await ImportAsync(4, prefix: "b-", requests: requests);
        await RunToCompletionAsync(dispatcher, second);

        var batch = (await Store.GetBatchAsync(second, Ct))!;
        Assert.Equal(4, batch.Cached);
        Assert.Equal((4d, Cost.ToUsd(batch.CacheSavedNanos), 4d), (metrics.Read("shepherd.cache.hits"), (decimal)metrics.Read("shepherd.cache.saved.usd"), metrics.Read("shepherd.tier.requests")));
    }

    /// <summary>Meters of this test's own, so that the dispatchers of other tests, on meters of the same name, are not counted.</summary>
    private sealed class OwnMeters : IMeterFactory
    {
        private readonly List<Meter> _made = [];

        public IReadOnlyList<Meter> Made => _made;

        public Meter Create(MeterOptions options)
        {
            var meter = new Meter(options);
            _made.Add(meter);
            return meter;
        }

        public void Dispose() => _made.ForEach(m => m.Dispose());
    }

    /// <summary>The counters of <see cref="OwnMeters"/>, read as a scrape reads them: each series' total, summed over its labels.</summary>
    private sealed class Counters : IDisposable
    {
        private readonly MeterListener _listener = new();
        private readonly Dictionary<string, double> _read = new(StringComparer.Ordinal);

        public Counters(OwnMeters meters)
        {
            _listener.InstrumentPublished = (instrument, listener) =>
            {
                if (meters.Made.Contains(instrument.Meter))
                {
                    listener.EnableMeasurementEvents(instrument);
                }
            };
            _listener.SetMeasurementEventCallback<long>((instrument, value, _, _) => _read[instrument.Name] = _read.GetValueOrDefault(instrument.Name) + value);
            _listener.SetMeasurementEventCallback<double>((instrument, value, _, _) => _read[instrument.Name] = _read.GetValueOrDefault(instrument.Name) + value);
            _listener.Start();
        }

        public double Read(string name)
        {
            _read.Clear();
            _listener.RecordObservableInstruments();
            return _read[name];
        }

        public void Dispose() => _listener.Dispose();
    }
}
