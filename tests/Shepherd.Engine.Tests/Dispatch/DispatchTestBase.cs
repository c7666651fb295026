using Microsoft.Extensions.Logging.Abstractions;
using Shepherd.Engine.Batches;
using Shepherd.Engine.Dispatch;
using Shepherd.Engine.Model;
using Shepherd.Engine.Pricing;
using Shepherd.Engine.Upstreams;
using Shepherd.Testing;

namespace Shepherd.Engine.Tests.Dispatch;

/// <summary>A store on a fake clock, with helpers to import batches and run a dispatcher over them.</summary>
public abstract class DispatchTestBase : StoreTestBase
{
    protected async Task<(string BatchId, IReadOnlyList<TestRequest> Requests)> ImportAsync(
        int count, string prefix = "req-", BatchPriority priority = BatchPriority.Normal, TimeSpan? window = null, IReadOnlyList<TestRequest>? requests = null, long? budgetNanos = null, BatchMode mode = BatchMode.Realtime, Func<NewBatch, NewBatch>? shape = null)
    {
        requests ??= BatchFiles.OpenAIChat(count, idPrefix: prefix);
        using var input = BatchFiles.Stream([.. requests.Select(r => r.Line)]);
        var result = await new BatchImporter(Store, new ImportOptions())
            .ImportAsync(input, (shape ?? (batch => batch))(new NewBatch(BatchIds.NewBatchId(), prefix, Priority: priority, CompletionWindow: window) { BudgetNanos = budgetNanos, Mode = mode }), Ct);
        Assert.True(result.Accepted);
        return (result.BatchId, requests);
    }

    protected Dispatcher CreateDispatcher(HttpMessageHandler handler, DispatchOptions? options = null, UpstreamOptions? upstream = null, TimeProvider? time = null) =>
        CreateDispatcher([(handler, upstream ?? new UpstreamOptions { BaseUrl = new Uri("http://upstream.test/v1") })], options, time);

    protected Dispatcher CreateDispatcher(IEnumerable<(HttpMessageHandler Handler, UpstreamOptions Upstream)> upstreams, DispatchOptions? options = null, TimeProvider? time = null) =>
        new(Store,
            [.. upstreams.Select(u => new UpstreamClient(new HttpClient(u.Handler), u.Upstream, time ?? Time))],
            options ?? new DispatchOptions { Concurrency = 8 },
            time ?? Time,
            new Random(3),
            new TokenEstimator(),
            PriceTable.BuiltIn,
            NullLogger<Dispatcher>.Instance);

    /// <summary>
    /// Runs the dispatcher on the fake clock until the batch ends, then stops it. The clock
    /// stands still while a request is in flight, unless it is one of <paramref name="waitingOnTheClock"/>.
    /// </summary>
    protected async Task RunToCompletionAsync(Dispatcher dispatcher, string batchId, Func<long>? waitingOnTheClock = null)
    {
        using var stop = new CancellationTokenSource();
        var running = dispatcher.RunAsync(null, stop.Token);
        var completed = dispatcher.WaitForBatchAsync(batchId, Ct);
        // Small steps: a timer fires at the end of the step it falls in, so each wait is rounded up to one.
        await Time.RunUntilAsync(Task.WhenAny(completed, running), TimeSpan.FromMilliseconds(10),
            () => dispatcher.IsQuiet(waitingOnTheClock?.Invoke() ?? 0));
        await stop.CancelAsync();
        await running;
        await completed;
    }

    /// <summary>Runs a dispatcher on the real clock against a simulator over HTTP until the batch ends.</summary>
    protected async Task RunOverHttpAsync(Simulator.SimulatorServer server, string batchId, DispatchOptions options)
    {
        var dispatcher = CreateDispatcher(new SocketsHttpHandler(), options, new UpstreamOptions { BaseUrl = new Uri(server.BaseUrl, "v1") }, TimeProvider.System);
        using var stop = new CancellationTokenSource();
        var running = dispatcher.RunAsync(null, stop.Token);
        await dispatcher.WaitForBatchAsync(batchId, Ct);
        await stop.CancelAsync();
        await running;
    }

    /// <summary>
    /// How long the batch took from <paramref name="started"/> to its end, by the fake clock at the
    /// commit that ended it: once it has ended nothing holds the clock back, so the time the test
    /// reads after the dispatcher stops may have run on.
    /// </summary>
    protected async Task<TimeSpan> TookAsync(string batchId, DateTimeOffset started) =>
        (await Store.GetBatchAsync(batchId, Ct))!.CompletedAt!.Value - started;

    protected async Task<List<ItemResult>> ResultsAsync(string batchId) => await Store.ReadResultsAsync(batchId, 0, Ct).ToListAsync(Ct);
}
