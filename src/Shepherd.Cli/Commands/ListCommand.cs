using System.CommandLine;
using Shepherd.Cli.Running;
using Shepherd.Client;
using Spectre.Console;

namespace Shepherd.Cli.Commands;

/// <summary><c>shepherd list</c>: the batches the key can see on a Shepherd server, newest first.</summary>
internal static class ListCommand
{
    public static Command Create()
    {
        var limit = CliOptions.Int("--limit", "Show at most this many batches, newest first", 20, 1, 100_000);
        limit.HelpName = "N";
        var remote = new RemoteOptionSet("Print the batches as a JSON array on stdout");
        var command = new Command("list", "List the batches on a Shepherd server that the API key can see, newest first") { limit };
        remote.AddTo(command);
        remote.SetAction(command, async (context, cancellationToken) =>
        {
            var most = context.Parse.GetValue(limit);
            var batches = new List<Batch>();
            await foreach (var batch in context.Client.ListBatchesAsync(cancellationToken))
            {
                batches.Add(batch);
                if (batches.Count >= most)
                {
                    break;
                }
            }

            if (context.Json)
            {
                await RemoteOutput.WriteJsonAsync(context.Stdout, json =>
                {
                    json.WriteStartArray();
                    foreach (var batch in batches)
                    {
                        RemoteOutput.WriteBatch(json, batch);
                    }

                    json.WriteEndArray();
                });
                return ExitCodes.Success;
            }

            if (batches.Count == 0)
            {
                await context.Stdout.WriteLineAsync("No batches.");
                return ExitCodes.Success;
            }

            var table = new Table().Border(TableBorder.Rounded)
                .AddColumn("id")
                .AddColumn("status")
                .AddColumn(new TableColumn("progress").RightAligned())
                .AddColumn(new TableColumn("total").RightAligned())
                .AddColumn("created");
            foreach (var batch in batches)
            {
                table.AddRow(
                    Markup.Escape(batch.Id),
                    RemoteOutput.StatusMarkup(batch),
                    RemoteOutput.Percent(batch),
                    RemoteOutput.Count(batch.Total),
                    Markup.Escape(RemoteOutput.Time(batch.CreatedAt)));
            }

            context.Console.Write(table);
            return ExitCodes.Success;
        });
        return command;
    }
}
