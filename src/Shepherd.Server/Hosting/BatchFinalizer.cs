using System.Security.Cryptography;
using System.Text;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Shepherd.Engine.Batches;
using Shepherd.Engine.Cluster;
using Shepherd.Engine.Model;
using Shepherd.Engine.Storage;

namespace Shepherd.Server.Hosting;

/// <summary>
/// Writes the output and error files of batches whose items have all ended, then gives each
/// batch its final status. The files are written to a spool folder first and stored under ids
/// derived from the batch id, so a crash halfway leaves nothing that a second try would duplicate.
/// Where nodes share a store, only the leader finalizes.
/// </summary>
internal sealed partial class BatchFinalizer(IBatchStore store, ServerPaths paths, ClusterNode node, BatchWatch watch, TimeProvider time, ILogger<BatchFinalizer> logger)
{
    /// <summary>How often the store is looked at when nothing wakes the finalizer sooner.</summary>
    internal static readonly TimeSpan PollInterval = TimeSpan.FromSeconds(1);

    private readonly Channel<bool> _wake = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });

    /// <summary>Asks for a look at the store now (a batch ended or was cancelled).</summary>
    public void Wake() => _wake.Writer.TryWrite(true);

    /// <summary>The id of a batch's output or error file: the same on every try.</summary>
    public static string FileId(string batchId, string kind) =>
        "file-" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(batchId + "/" + kind)))[..24];

    public async Task RunAsync(CancellationToken stoppingToken)
    {
        try
        {
            while (true)
            {
                // Among nodes sharing a store, the leader alone writes result files.
                foreach (var batch in node.IsLeader ? await FinalizingAsync(stoppingToken) : [])
                {
                    try
                    {
                        await FinalizeAsync(batch, stoppingToken);
                    }
                    catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or StoreException)
                    {
                        LogFinalizeFailed(ex, batch.Id);
                    }
                }

                using var timeout = new CancellationTokenSource(PollInterval, time);
                using var wait = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken, timeout.Token);
                try
                {
                    await _wake.Reader.ReadAsync(wait.Token);
                }
                catch (OperationCanceledException) when (!stoppingToken.IsCancellationRequested)
                {
                    // The poll interval passed.
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // The server is stopping; what was not finalized is finalized after the restart.
        }
    }

    /// <summary>The batches to finalize, or none while the store cannot be read (they are looked for again shortly).</summary>
    private async Task<IReadOnlyList<BatchRecord>> FinalizingAsync(CancellationToken cancellationToken)
    {
        try
        {
            return await store.ListFinalizingBatchesAsync(cancellationToken);
        }
        catch (StoreException ex)
        {
            LogListFailed(ex);
            return [];
        }
    }

    private async Task FinalizeAsync(BatchRecord batch, CancellationToken cancellationToken)
    {
        var outputPath = paths.SpoolFile(batch.Id + ".output.jsonl");
        var errorPath = paths.SpoolFile(batch.Id + ".error.jsonl");
        try
        {
            ExportSummary summary;
            await using (var output = File.Create(outputPath))
            await using (var errors = File.Create(errorPath))
            {
                summary = await ResultExporter.ExportAsync(store, batch, output, errors, cancellationToken);
            }

            var outputId = summary.Succeeded > 0 ? await StoreFileAsync(batch, "output", outputPath, cancellationToken) : null;
            var errorId = summary.Failed > 0 ? await StoreFileAsync(batch, "error", errorPath, cancellationToken) : null;
            await store.FinishFinalizingAsync(batch.Id, outputId, errorId, time.GetUtcNow(), cancellationToken);
            watch.Pulse();
        }
        finally
        {
            File.Delete(outputPath);
            File.Delete(errorPath);
        }
    }

    private async Task<string> StoreFileAsync(BatchRecord batch, string kind, string path, CancellationToken cancellationToken)
    {
        var id = FileId(batch.Id, kind);
        await store.DeleteFileAsync(id, cancellationToken);
        await using var content = File.OpenRead(path);
        await store.AddFileAsync(new NewFile(id, batch.Owner, $"{batch.Id}_{kind}.jsonl", "batch_output", batch.Id), content, long.MaxValue, cancellationToken);
        return id;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Batches to finalize could not be read; the finalizer looks again shortly")]
    private partial void LogListFailed(Exception exception);

    [LoggerMessage(Level = LogLevel.Error, Message = "Writing the result files of batch {BatchId} failed; it stays finalizing and is tried again")]
    private partial void LogFinalizeFailed(Exception exception, string batchId);
}
