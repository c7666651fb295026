using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Shepherd.Engine.Cluster;
using Shepherd.Engine.Dispatch;
using Shepherd.Engine.Native;
using Shepherd.Engine.Storage;

namespace Shepherd.Server.Hosting;

/// <summary>
/// Runs the engine inside the server: the dispatcher over every realtime batch, the native runner
/// over native ones, the node's heartbeat and the finalizer. A store that cannot be used stops the
/// engine, not the server: it starts again once the store answers.
/// </summary>
internal sealed partial class EngineService(
    Dispatcher dispatcher,
    NativeBatchRunner native,
    ClusterNode cluster,
    BatchFinalizer finalizer,
    BatchWatch watch,
    BackgroundImports imports,
    ServerAnswerCache answers,
    IBatchStore store,
    TimeProvider time,
    IHostApplicationLifetime lifetime,
    ILogger<EngineService> logger) : BackgroundService
{
    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        // Readings stop first: they write to the store the engine is about to let go of.
        await imports.StopAllAsync();
        await base.StopAsync(cancellationToken);
    }

    /// <summary>The longest wait between two starts of the engine while the store is away.</summary>
    private static readonly TimeSpan MaxPause = TimeSpan.FromSeconds(30);

    private volatile bool _running;

    /// <summary>True while the dispatcher, the native runner and the node's heartbeat run.</summary>
    public bool IsRunning => _running;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        dispatcher.BatchesEnded += finalizer.Wake;
        native.BatchesEnded += finalizer.Wake;

        // Batches that need no result files (the Anthropic door's) have ended already.
        dispatcher.BatchesEnded += watch.Pulse;
        native.BatchesEnded += watch.Pulse;
        cluster.Changed += finalizer.Wake;
        cluster.Changed += native.NotifyBatchesChanged;
        var finalizing = finalizer.RunAsync(stoppingToken);
        try
        {
            var pause = TimeSpan.FromSeconds(1);
            while (!stoppingToken.IsCancellationRequested)
            {
                try
                {
                    await RunOnceAsync(stoppingToken);
                    break;
                }
                catch (StoreException ex) when (!stoppingToken.IsCancellationRequested)
                {
                    // The store went away (a database restarting, a full disk): the server stays
                    // up, says it is not ready, and starts the engine again once the store answers,
                    // as a restart would (this node's leases are handed back first).
                    LogStoreLost(ex, pause);
                    await Task.Delay(pause, time, stoppingToken);
                    pause = TimeSpan.FromTicks(Math.Min(pause.Ticks * 2, MaxPause.Ticks));
                    await ReleaseLeasesAsync(stoppingToken);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // The server is stopping.
        }
        catch (Exception ex)
        {
            // Without a dispatcher the server would accept work it cannot do.
            LogEngineFailed(ex);
            lifetime.StopApplication();
        }
        finally
        {
            _running = false;
            dispatcher.BatchesEnded -= finalizer.Wake;
            native.BatchesEnded -= finalizer.Wake;
            dispatcher.BatchesEnded -= watch.Pulse;
            native.BatchesEnded -= watch.Pulse;
            cluster.Changed -= finalizer.Wake;
            cluster.Changed -= native.NotifyBatchesChanged;
        }

        await finalizing;
    }

    /// <summary>
    /// Runs the dispatcher, the native runner (which never claims the dispatcher's items) and,
    /// on a shared store, the node's heartbeat, until the server stops or one of them fails;
    /// the others then stop too.
    /// </summary>
    private async Task RunOnceAsync(CancellationToken stoppingToken)
    {
        dispatcher.AnswerCache ??= await answers.OpenAsync(stoppingToken);
        native.AnswerCache = dispatcher.AnswerCache;
        using var all = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        var dispatching = dispatcher.RunAsync(null, all.Token);
        var running = native.RunAsync(all.Token);
        var beating = cluster.RunAsync(all.Token);
        _running = true;
        try
        {
            await Task.WhenAny(dispatching, running);
        }
        finally
        {
            _running = false;
            await all.CancelAsync();
        }

        await Task.WhenAll(dispatching, running, beating);

        // Nothing is sent any more: what this node leased goes back to the others now.
        await cluster.LeaveAsync(CancellationToken.None);
    }

    private async Task ReleaseLeasesAsync(CancellationToken cancellationToken)
    {
        try
        {
            await store.ReleaseLeasesAsync(cancellationToken);
        }
        catch (StoreException)
        {
            // Still away: the engine's next start finds out and waits again.
        }
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "The store cannot be used; the engine starts again in {Pause} (the server answers /readyz with 503 meanwhile)")]
    private partial void LogStoreLost(Exception exception, TimeSpan pause);

    [LoggerMessage(Level = LogLevel.Critical, Message = "The engine stopped; the server stops with it")]
    private partial void LogEngineFailed(Exception exception);
}
