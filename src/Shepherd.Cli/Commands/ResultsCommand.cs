using System.CommandLine;
using System.Runtime.InteropServices;
using Shepherd.Cli.Running;

namespace Shepherd.Cli.Commands;

/// <summary><c>shepherd results ID</c>: a batch's result lines, streamed to a file or to stdout with constant memory.</summary>
internal static class ResultsCommand
{
    public static Command Create()
    {
        var id = RemoteOptionSet.BatchId();
        var output = CliOptions.FilePath("--output", "Write the results to this JSONL file (it appears whole or not at all); default: stdout", "FILE", "-o");
        var remote = new RemoteOptionSet("With -o, print what was written (batch_id, output, results) as JSON on stdout; the results themselves are JSONL either way");
        var command = new Command("results", "Stream a batch's results (one JSON line per request, in input order) to a file or to stdout") { id, output };
        remote.AddTo(command);
        remote.SetAction(command, async (context, cancellationToken) =>
        {
            var batchId = context.Parse.GetValue(id)!;
            if (context.Parse.GetValue(output) is { } target)
            {
                // Before anything is downloaded: a folder that is not there is the user's to fix.
                ResultFiles.CheckTarget("--output", Path.GetFullPath(target));
            }

            if (context.Parse.GetValue(output) is { } path)
            {
                var full = Path.GetFullPath(path);
                var lines = await context.Client.ExportResultsAsync(batchId, full, cancellationToken);
                if (context.Json)
                {
                    await RemoteOutput.WriteJsonAsync(context.Stdout, json =>
                    {
                        json.WriteStartObject();
                        json.WriteString("batch_id", batchId);
                        json.WriteString("output", full);
                        json.WriteNumber("results", lines);
                        json.WriteEndObject();
                    });
                }
                else
                {
                    await context.Stdout.WriteLineAsync($"Wrote {RemoteOutput.Plural(lines, "result")} of {batchId} to {path}.");
                }

                return ExitCodes.Success;
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
}
