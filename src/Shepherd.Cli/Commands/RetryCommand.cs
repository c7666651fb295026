using System.CommandLine;
using Shepherd.Cli.Running;

namespace Shepherd.Cli.Commands;

/// <summary><c>shepherd retry ID</c>: sends the failed and expired requests of an ended batch on a Shepherd server again, as a new batch.</summary>
internal static class RetryCommand
{
    public static Command Create()
    {
        var id = RemoteOptionSet.BatchId();
        var waiting = new WaitOptionSet();
        var remote = new RemoteOptionSet("Print the new batch as JSON on stdout (with --wait, once it has ended; progress goes to stderr)");
        var command = new Command("retry", "Send the failed and expired requests of an ended batch on a Shepherd server again, as a new batch (its metadata retry_of names the first)") { id };
        var wait = waiting.AddWithWait(command, "Wait for the new batch to end, with progress, and exit as run does (0 all succeeded, 3 some failed)");
        remote.AddTo(command);
        remote.SetAction(command, async (context, cancellationToken) =>
        {
            var parse = context.Parse;
            var original = parse.GetValue(id)!;
            if (await context.Client.RetryFailedAsync(original, cancellationToken) is not { } retry)
            {
                await context.Stderr.WriteLineAsync($"{original} has no failed or expired request: nothing to retry.");
                if (context.Json)
                {
                    // One document whatever happened: no retry batch, and why.
                    await RemoteOutput.WriteJsonAsync(context.Stdout, json =>
                    {
                        json.WriteStartObject();
                        json.WriteNull("id");
                        json.WriteString("retry_of", original);
                        json.WriteNumber("retried", 0);
                        json.WriteEndObject();
                    });
                }

                return ExitCodes.Success;
            }

            var started = $"Retrying {RemoteOutput.Count(retry.Total)} failed or expired requests of {original} as {retry.Id} ({retry.StatusName}).";
            return await waiting.FollowAsync(context, wait, retry, started, cancellationToken);
        }, waiting.Tune);
        return command;
    }
}
