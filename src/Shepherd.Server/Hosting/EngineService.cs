using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Shepherd.Engine.Dispatch;
using Shepherd.Engine.Dispatch.Native;

namespace Shepherd.Server.Hosting;

/// <summary>Runs the engine inside the server: the dispatcher over every realtime batch, the native runner over native ones, and the finalizer.</summary>
internal sealed partial class EngineService(
    Dispatcher dispatcher,
    NativeBatchRunner native,
    ClusterNode cluster,
    BatchFinalizer finalizer,
    BackgroundImports imports,
    IHostApplicationLifetime lifetime,
    ILogger<EngineService> logger) : BackgroundService
{
    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        // Readings stop first: they write to the store the engine is about to let go of.
        await imports.StopAllAsync();
        await base.StopAsync(cancellationToken);
    }

    private volatile bool _running;

    /// <summary>True while the dispatcher, the native runner and the node's heartbeat run.</summary>
    public bool IsRunning => _running;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        dispatcher.BatchesEnded += finalizer.Wake;
        native.BatchesEnded += finalizer.Wake;
        cluster.Changed += finalizer.Wake;
        cluster.Changed += native.NotifyBatchesChanged;
        var finalizing = finalizer.RunAsync(stoppingToken);
        try
        {
            // Native batches run beside the dispatcher, which never claims their items; on a
            // shared store the node beats beside both. If one stops with a fault, the others stop
            // too and the fault stops the server.
            using var all = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
            var dispatching = dispatcher.RunAsync(null, all.Token);
            var running = native.RunAsync(all.Token);
            var beating = cluster.RunAsync(all.Token);
            _running = true;
            await Task.WhenAny(dispatching, running);
            _running = false;
            await all.CancelAsync();
            await Task.WhenAll(dispatching, running, beating);

            // Nothing is sent any more: what this node leased goes back to the others now.
            await cluster.LeaveAsync(CancellationToken.None);
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
            cluster.Changed -= finalizer.Wake;
            cluster.Changed -= native.NotifyBatchesChanged;
        }

        await finalizing;
    }

    [LoggerMessage(Level = LogLevel.Critical, Message = "The engine stopped; the server stops with it")]
    private partial void LogEngineFailed(Exception exception);
}
