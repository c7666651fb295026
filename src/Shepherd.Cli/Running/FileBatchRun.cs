using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;
using Shepherd.Cli.Commands;
using Shepherd.Engine;
using Shepherd.Engine.Batches;
using Shepherd.Engine.Configuration;
using Shepherd.Engine.Dispatch;
using Shepherd.Engine.Formats;
using Shepherd.Engine.Pricing;
using Shepherd.Engine.Storage;
using Shepherd.Engine.Upstreams;
using Spectre.Console;

namespace Shepherd.Cli.Running;

/// <summary>
/// <c>shepherd run FILE</c>: imports the file into its state store (or finds it there), sends
/// what is not done yet, and writes the output and error files from the store. Killed at any
/// moment, the same command resumes; run again after the end, it sends nothing and rewrites the
/// same files.
/// </summary>
internal sealed class FileBatchRun(RunSettings settings, IAnsiConsole console, TextWriter stdout, TextWriter stderr, TimeProvider time)
{
    public async Task<int> ExecuteAsync(CancellationToken cancellationToken)
    {
        var input = Path.GetFullPath(settings.InputPath);
        if (settings.StatePath is { } state && PostgresStoreOptions.Names(state))
        {
            throw new UsageException("--state: shepherd run keeps its state in a SQLite file; to share a PostgreSQL store among nodes, run shepherd serve --store " + PostgresStoreOptions.Redacted(state));
        }

        var statePath = Path.GetFullPath(settings.StatePath ?? input + ".shepherd.db");
        using var stateLock = StateLock.Acquire(statePath);
        if (settings.Fresh)
        {
            DeleteState(statePath);
        }

        var stateExisted = File.Exists(statePath);
        int exitCode;
        var config = settings.ConfigPath is { } configPath ? ShepherdConfig.Load(configPath) : null;
        var upstreams = new List<UpstreamOptions>();
        await using (var services = BuildServices(statePath, config, upstreams))
        {
            exitCode = await ExecuteAsync(services, upstreams, config, input, statePath, cancellationToken);
        }

        if (exitCode == ExitCodes.InvalidInput && !stateExisted)
        {
            // A rejected input leaves nothing behind when it was the state file's first use.
            DeleteState(statePath);
        }

        return exitCode;
    }

    private async Task<int> ExecuteAsync(ServiceProvider services, List<UpstreamOptions> upstreams, ShepherdConfig? config, string input, string statePath, CancellationToken cancellationToken)
    {
        var store = services.GetRequiredService<IBatchStore>();
        await store.InitializeAsync(cancellationToken);
        var batch = await FindResumableAsync(store, input, cancellationToken);
        var importTime = TimeSpan.Zero;
        if (batch is null)
        {
            var importStarted = time.GetTimestamp();
            var imported = await ImportAsync(services.GetRequiredService<BatchImporter>(), input, cancellationToken);
            importTime = time.GetElapsedTime(importStarted);
            if (!imported.Accepted)
            {
                await store.DeleteBatchAsync(imported.BatchId, cancellationToken);
                await ReportRejectedAsync(imported);
                return ExitCodes.InvalidInput;
            }

            batch = (await store.GetBatchAsync(imported.BatchId, cancellationToken))!;
        }

        var target = EngineSetup.ConfigureUpstreams(settings, config, upstreams,
            batch.Format == InputFormat.Anthropic || batch.Endpoint == BatchEndpoints.Messages, batch.Endpoint);
        foreach (var model in await store.ListActiveModelsAsync(batch.Id, cancellationToken))
        {
            if (!upstreams.Any(u => u.Serves(model)))
            {
                throw new UsageException($"No upstream serves the model {model}: add it to an upstream's models in the configuration, or remove the models list.");
            }
        }

        var (outputPath, errorsPath) = OutputPaths(input);
        return await DispatchAndExportAsync(services, store, batch, importTime, target, statePath, outputPath, errorsPath, cancellationToken);
    }

    private async Task<int> DispatchAndExportAsync(ServiceProvider services, IBatchStore store, BatchRecord batch, TimeSpan importTime, string target, string statePath, string outputPath, string errorsPath, CancellationToken cancellationToken)
    {
        var released = await store.ReleaseLeasesAsync(cancellationToken);
        var started = time.GetTimestamp();
        var finishedBefore = batch.Finished;
        var dispatcher = services.GetRequiredService<Dispatcher>();
        if (batch.Status == BatchStatus.InProgress)
        {
            await stderr.WriteLineAsync(batch.Finished > 0 || released > 0
                ? $"Resuming {batch.Id}: {batch.Finished:N0} of {batch.Total:N0} requests already done."
                : $"Sending {batch.Total:N0} requests of {Relative(settings.InputPath)} ({batch.Id}) to {target}, {settings.Concurrency} at a time.");

            if (!await DispatchAsync(dispatcher, store, batch, cancellationToken))
            {
                var now = (await store.GetBatchAsync(batch.Id, CancellationToken.None))!;
                await stderr.WriteLineAsync($"Interrupted: {now.Finished:N0} of {now.Total:N0} requests done and saved in {Relative(statePath)}. Run the same command again to resume.");
                return ExitCodes.Interrupted;
            }
        }
        else
        {
            await stderr.WriteLineAsync($"{batch.Id} already completed: nothing to send; rewriting the results.");
        }

        var wall = time.GetElapsedTime(started);
        var final = (await store.GetBatchAsync(batch.Id, cancellationToken))!;
        var exportStarted = time.GetTimestamp();
        var exported = await ExportAsync(store, final, outputPath, errorsPath, cancellationToken);
        var phases = new RunPhases(importTime, wall, time.GetElapsedTime(exportStarted));
        await WriteSummaryAsync(final, exported, phases, final.Finished - finishedBefore, dispatcher.Counters, outputPath, errorsPath);
        return final.Succeeded == final.Total ? ExitCodes.Success : ExitCodes.SomeFailed;
    }

    /// <summary>Dispatches until the batch completes; false when interrupted first.</summary>
    private async Task<bool> DispatchAsync(Dispatcher dispatcher, IBatchStore store, BatchRecord batch, CancellationToken cancellationToken)
    {
        using var stop = new CancellationTokenSource();
        var running = dispatcher.RunAsync(batch.Id, stop.Token);
        var completed = dispatcher.WaitForBatchAsync(batch.Id, cancellationToken);
        var work = Task.WhenAny(running, completed).Unwrap();
        var display = new ProgressDisplay(console, settings.Json ? stderr : stdout, ResolveProgressMode(), time);
        await display.ShowAsync(Path.GetFileName(settings.InputPath), work, async () =>
        {
            var now = await store.GetBatchAsync(batch.Id, CancellationToken.None);
            var counters = dispatcher.Counters;
            return new ProgressSample(now!.Total, now.Succeeded, now.Failed, now.InputTokens, now.OutputTokens, counters.InFlight, counters.Retries)
            {
                CostUsd = Cost.ToUsd(now.CostNanos),
            };
        });

        var interrupted = false;
        try
        {
            await work;
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            interrupted = true;
        }

        await stop.CancelAsync();
        // Rethrows a store failure; otherwise returns once every received answer is committed.
        await running;
        return !interrupted;
    }

    private static async Task<BatchRecord?> FindResumableAsync(IBatchStore store, string input, CancellationToken cancellationToken)
    {
        var batch = await store.FindBatchBySourceAsync(input, cancellationToken);
        if (batch is null)
        {
            return null;
        }

        if (batch.Status is BatchStatus.Validating or BatchStatus.Failed)
        {
            // An import that was interrupted, or rejected: read the file afresh.
            await store.DeleteBatchAsync(batch.Id, cancellationToken);
            return null;
        }

        var length = new FileInfo(input).Length;
        var unchanged = length == batch.SourceBytes;
        if (unchanged)
        {
            await using var file = OpenInput(input);
            unchanged = Convert.ToHexStringLower(await SHA256.HashDataAsync(file, cancellationToken)) == batch.SourceSha256;
        }

        return unchanged
            ? batch
            : throw new UsageException(
                $"{Relative(input)} changed since {batch.Id} was started from it, so its saved progress does not fit the file any more. " +
                "Pass --fresh to start over (answers already received are discarded), or --state to keep both.");
    }

    private async Task<ImportResult> ImportAsync(BatchImporter importer, string input, CancellationToken cancellationToken)
    {
        await using var file = OpenInput(input);
        return await importer.ImportAsync(file, new NewBatch(BatchIds.NewBatchId(), input, Priority: settings.Priority, CompletionWindow: settings.CompletionWindow), cancellationToken);
    }

    private async Task ReportRejectedAsync(ImportResult imported)
    {
        var name = Relative(settings.InputPath);
        await stderr.WriteLineAsync($"{name} was not accepted; nothing was sent. {imported.Errors.Count} problem{(imported.Errors.Count == 1 ? "" : "s")}:");
        foreach (var error in imported.Errors)
        {
            await stderr.WriteLineAsync($"  {name}:{error}");
        }

        if (imported.ErrorsTruncated)
        {
            await stderr.WriteLineAsync("  (reading stopped there; later lines were not checked)");
        }
    }

    private ServiceProvider BuildServices(string statePath, ShepherdConfig? config, List<UpstreamOptions> upstreams)
    {
        var services = new ServiceCollection();
        services.AddSingleton(time);
        services.AddLogging(logging => logging
            .SetMinimumLevel(settings.Verbose ? LogLevel.Debug : LogLevel.Warning)
            .AddSimpleConsole(console => console.SingleLine = true));
        // Logs go to stderr, so stdout holds only progress, the summary or --json.
        services.Configure<ConsoleLoggerOptions>(console => console.LogToStandardErrorThreshold = LogLevel.Trace);
        var http = services.AddShepherdEngine(EngineSetup.Options(settings, config, statePath, upstreams));
        EngineSetup.UseSimulatorIfChosen(settings, http, time);

        return services.BuildServiceProvider();
    }

    private static async Task<ExportSummary> ExportAsync(IBatchStore store, BatchRecord batch, string outputPath, string errorsPath, CancellationToken cancellationToken)
    {
        // Written beside the targets and moved over them, so a kill never leaves a half file.
        var outputTemp = outputPath + ".partial";
        var errorsTemp = errorsPath + ".partial";
        ExportSummary summary;
        await using (var output = new FileStream(outputTemp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16, useAsync: true))
        await using (var errors = new FileStream(errorsTemp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16, useAsync: true))
        {
            summary = await ResultExporter.ExportAsync(store, batch, output, errors, cancellationToken);
        }

        File.Move(outputTemp, outputPath, overwrite: true);
        File.Move(errorsTemp, errorsPath, overwrite: true);
        return summary;
    }

    private async Task WriteSummaryAsync(BatchRecord batch, ExportSummary exported, RunPhases phases, long finishedThisRun, DispatchCounters counters, string outputPath, string errorsPath)
    {
        var wall = phases.Dispatch;
        var seconds = Math.Max(wall.TotalSeconds, 1e-6);
        var rate = finishedThisRun / seconds;
        if (settings.Json)
        {
            var buffer = new System.Buffers.ArrayBufferWriter<byte>();
            using var json = new Utf8JsonWriter(buffer);
            json.WriteStartObject();
            json.WriteString("batch_id", batch.Id);
            json.WriteString("status", StatusWord(batch.Status));
            json.WriteNumber("total", batch.Total);
            json.WriteNumber("succeeded", batch.Succeeded);
            json.WriteNumber("failed", batch.Failed);
            json.WriteNumber("expired", batch.Expired);
            json.WriteNumber("cancelled", batch.Cancelled);
            json.WriteNumber("input_tokens", batch.InputTokens);
            json.WriteNumber("output_tokens", batch.OutputTokens);
            json.WriteNumber("cost_usd", Cost.ToUsd(batch.CostNanos));
            json.WriteNumber("unpriced_requests", batch.Unpriced);
            json.WriteNumber("finished_this_run", finishedThisRun);
            json.WriteNumber("wall_seconds", Math.Round(wall.TotalSeconds, 3));
            json.WriteNumber("requests_per_second", Math.Round(rate, 1));
            json.WriteNumber("import_seconds", Math.Round(phases.Import.TotalSeconds, 3));
            json.WriteNumber("export_seconds", Math.Round(phases.Export.TotalSeconds, 3));
            json.WriteNumber("attempts", counters.Attempts);
            json.WriteNumber("retries", counters.Retries);
            json.WriteNumber("rate_limited", counters.RateLimited);
            using var self = Process.GetCurrentProcess();
            json.WriteNumber("peak_working_set_bytes", self.PeakWorkingSet64);
            json.WriteNumber("cpu_seconds", Math.Round(self.TotalProcessorTime.TotalSeconds, 3));
            json.WriteString("output", outputPath);
            json.WriteString("errors", errorsPath);
            json.WriteEndObject();
            await json.FlushAsync();
            await stdout.WriteLineAsync(System.Text.Encoding.UTF8.GetString(buffer.WrittenSpan));
            return;
        }

        var unsent = batch.Expired > 0 ? $", {batch.Expired:N0} expired" : batch.Cancelled > 0 ? $", {batch.Cancelled:N0} cancelled" : "";
        var line = string.Create(CultureInfo.InvariantCulture,
            $"{batch.Id} {StatusWord(batch.Status)}: {batch.Succeeded:N0} succeeded, {batch.Failed:N0} failed{unsent} of {batch.Total:N0}");
        await stdout.WriteLineAsync(finishedThisRun > 0
            ? string.Create(CultureInfo.InvariantCulture, $"{line} in {ProgressDisplay.FormatDuration(wall)} ({rate:0.0} requests/s, {counters.Retries:N0} retries)")
            : line);
        await stdout.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"  tokens:  {batch.InputTokens:N0} in, {batch.OutputTokens:N0} out"));
        var unpriced = batch.Unpriced > 0 ? $" ({batch.Unpriced:N0} answers of models without a price count as $0)" : "";
        await stdout.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"  cost:    ${Cost.ToUsd(batch.CostNanos):0.0000}{unpriced}"));
        await stdout.WriteLineAsync($"  results: {Relative(outputPath)} ({exported.Succeeded:N0} lines)");
        await stdout.WriteLineAsync($"  errors:  {Relative(errorsPath)} ({exported.Failed:N0} lines)");
    }

    private static string StatusWord(BatchStatus status) => status switch
    {
        BatchStatus.Expired => "expired",
        BatchStatus.Cancelled => "cancelled",
        _ => "completed",
    };

    private ProgressMode ResolveProgressMode() => ProgressDisplay.Resolve(settings.Progress, settings.Json, console);

    private (string Output, string Errors) OutputPaths(string input)
    {
        var folder = Path.GetDirectoryName(input)!;
        var stem = Path.GetFileName(input);
        stem = stem.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase) ? stem[..^6] : Path.GetFileNameWithoutExtension(stem);
        return (
            Path.GetFullPath(settings.OutputPath ?? Path.Combine(folder, stem + ".out.jsonl")),
            Path.GetFullPath(settings.ErrorsPath ?? Path.Combine(folder, stem + ".errors.jsonl")));
    }

    private static FileStream OpenInput(string path) =>
        new(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.SequentialScan | FileOptions.Asynchronous);

    private static void DeleteState(string statePath)
    {
        foreach (var suffix in new[] { "", "-wal", "-shm" })
        {
            File.Delete(statePath + suffix);
        }
    }

    private static string Relative(string path) => Path.GetRelativePath(Environment.CurrentDirectory, path);
}

/// <summary>How long each phase of one <c>shepherd run</c> took.</summary>
/// <param name="Import">Reading the input into the store; zero when a stored batch resumed.</param>
/// <param name="Dispatch">Sending, until the batch ended.</param>
/// <param name="Export">Writing the output and error files from the store.</param>
internal readonly record struct RunPhases(TimeSpan Import, TimeSpan Dispatch, TimeSpan Export);
