using System.CommandLine;
using System.Runtime.InteropServices;
using Shepherd.Cli.Running;
using Shepherd.Engine.Batches;

namespace Shepherd.Cli.Commands;

/// <summary><c>shepherd results ID</c>: a batch's result lines, streamed to a file or to stdout with constant memory.</summary>
internal static class ResultsCommand
{
    public static Command Create()
    {
        var id = RemoteOptionSet.BatchId();
        var output = CliOptions.FilePath("--output", "Write the results to this JSONL file (it appears whole or not at all); default: stdout", "FILE", "-o");
        var format = CliOptions.Format("jsonl (the result lines as the server gives them), csv or parquet (a row per request in input order: id, status, the answer's text, usage, cost, and a column per field of structured answers; parquet needs -o)");
        var remote = new RemoteOptionSet("With -o, print what was written (batch_id, output, results) as JSON on stdout; the results themselves are JSONL either way");
        var command = new Command("results", "Stream a batch's results (one JSON line per request, in input order, or a CSV or Parquet table) to a file or to stdout") { id, output, format };
        remote.AddTo(command);
        remote.SetAction(command, async (context, cancellationToken) =>
        {
            var batchId = context.Parse.GetValue(id)!;
            if (context.Parse.GetValue(output) is { } target)
            {
                // Before anything is downloaded: a folder that is not there is the user's to fix.
                ResultFiles.CheckTarget("--output", Path.GetFullPath(target));
            }

            var table = format.ValueIn(context.Parse);
            if (table == ResultFormat.Parquet && context.Parse.GetValue(output) is null)
            {
                throw new UsageException("--format parquet writes a file: give it with -o FILE.");
            }

            if (table != ResultFormat.Jsonl)
            {
                return await WriteTableAsync(context, batchId, table, context.Parse.GetValue(output), cancellationToken);
            }

            if (context.Parse.GetValue(output) is { } path)
            {
                var full = Path.GetFullPath(path);
                var lines = await context.Client.ExportResultsAsync(batchId, full, cancellationToken);
                return await WroteAsync(context, batchId, path, lines, "result");
            }

            // Each line as the server sent it, bytes for bytes; a page of results at a time in memory.
            await using var stdout = new BufferedStream(Console.OpenStandardOutput(), 1 << 16);
            await foreach (var result in context.Client.GetResultsAsync(batchId, cancellationToken))
            {
                stdout.Write(JsonMarshal.GetRawUtf8Value(result.Line));
                stdout.WriteByte((byte)'\n');
            }

            await stdout.FlushAsync(cancellationToken);
            return ExitCodes.Success;
        });
        return command;
    }

    /// <summary>Rows of the fields of this many first answers make the table's columns.</summary>
    private const int ColumnSample = 1000;

    /// <summary>Writes the batch's results as a table to <paramref name="path"/> (whole or not at all), or, for CSV without one, to stdout.</summary>
    private static async Task<int> WriteTableAsync(RemoteContext context, string batchId, ResultFormat format, string? path, CancellationToken cancellationToken)
    {
        var batch = await context.Client.GetBatchAsync(batchId, cancellationToken);
        var endpoint = batch.Endpoint ?? Engine.Formats.BatchEndpoints.ChatCompletions;
        async IAsyncEnumerable<TableRow> Rows()
        {
            await foreach (var result in context.Client.GetResultsAsync(batchId, cancellationToken))
            {
                yield return TableExport.Row(endpoint, result.Line);
            }
        }

        if (path is null)
        {
            await using var stdout = Console.OpenStandardOutput();
            await TableExport.WriteSampledAsync(Rows(), ColumnSample, format, stdout, cancellationToken);
            return ExitCodes.Success;
        }

        var full = Path.GetFullPath(path);
        long rows;
        await using (var file = new FileStream(full + ".partial", FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16, useAsync: true))
        {
            rows = await TableExport.WriteSampledAsync(Rows(), ColumnSample, format, file, cancellationToken);
        }

        File.Move(full + ".partial", full, overwrite: true);
        return await WroteAsync(context, batchId, path, rows, "row");
    }

    /// <summary>Says what was written to <paramref name="path"/>: in words, or with --json as <c>{"batch_id", "output", "results"|"rows"}</c>.</summary>
    private static async Task<int> WroteAsync(RemoteContext context, string batchId, string path, long count, string noun)
    {
        if (context.Json)
        {
            await RemoteOutput.WriteJsonAsync(context.Stdout, json =>
            {
                json.WriteStartObject();
                json.WriteString("batch_id", batchId);
                json.WriteString("output", Path.GetFullPath(path));
                json.WriteNumber(noun + "s", count);
                json.WriteEndObject();
            });
        }
        else
        {
            await context.Stdout.WriteLineAsync($"Wrote {RemoteOutput.Plural(count, noun)} of {batchId} to {path}.");
        }

        return ExitCodes.Success;
    }
}
