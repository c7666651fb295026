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

    [Fact]
    public async Task ARequestAnsweredBefore_IsAnsweredFromTheCache_NotSent_AtNoCost()
    {
        using var folder = new TempDirectory();
        await using var cache = await AnswerCache.OpenAsync(folder.File("answers.db"), 1 << 20, TimeSpan.FromDays(30), Time, Ct);
        var requests = BatchFiles.OpenAIChat(5);
        var handler = new ScriptedHandler(ScriptedHandler.Json(HttpStatusCode.OK, Answer));
        var (first, _) = await ImportAsync(5, prefix: "a-", requests: requests);
        var dispatcher = CreateDispatcher(handler);
        dispatcher.AnswerCache = cache;
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
    public async Task TheMetrics_CountTheRequestsAnsweredFromTheCache_AndWhatTheySaved_NotAsAnswersOfATier()
    {
        using var folder = new TempDirectory();
        await using var cache = await AnswerCache.OpenAsync(folder.File("answers.db"), 1 << 20, TimeSpan.FromDays(30), Time, Ct);
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
