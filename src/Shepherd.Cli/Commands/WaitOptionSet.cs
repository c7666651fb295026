using System.CommandLine;
using System.CommandLine.Parsing;
using Shepherd.Cli.Running;
using Shepherd.Client;

namespace Shepherd.Cli.Commands;

/// <summary>How <c>wait</c> and <c>submit --wait</c> wait: <c>--timeout</c>, <c>--poll-interval</c> and <c>--progress</c>.</summary>
internal sealed class WaitOptionSet
{
    private readonly Option<TimeSpan?> _timeout = CliOptions.Duration("--timeout", "Stop waiting after this long (30m, 2h): the batch goes on, and the exit code is 4. Default: until the batch ends");
    private readonly Option<double?> _pollInterval = CliOptions.OptionalSeconds(
        "--poll-interval", "Seconds between two looks at the batch. Default: 2, growing by half each time up to 30", 0.05);
    private readonly ChoiceOption<ProgressMode> _progress = CliOptions.Progress();

    public WaitOptionSet()
    {
        _timeout.HelpName = "DURATION";
        _pollInterval.HelpName = "SECONDS";
    }

    public IEnumerable<Option> All => [_timeout, _pollInterval, _progress];

    public TimeSpan? Timeout(ParseResult parse) => parse.GetValue(_timeout);

    public ProgressMode Progress(ParseResult parse) => _progress.ValueIn(parse);

    /// <summary>True when one of the options is on the command line.</summary>
    public bool AnyGiven(CommandResult command) => All.Any(option => command.GetResult(option) is { Implicit: false });

    /// <summary>
    /// Adds <c>--wait</c> (described by <paramref name="description"/>) and the options of waiting
    /// to a command that waits only when asked (<c>submit</c>, <c>retry</c>); the options without
    /// <c>--wait</c> are an error. Returns <c>--wait</c>.
    /// </summary>
    public Option<bool> AddWithWait(Command command, string description)
    {
        var wait = new Option<bool>("--wait") { Description = description };
        command.Add(wait);
        foreach (var option in All)
        {
            command.Add(option);
        }

        command.Validators.Add(result =>
        {
            if (result.GetResult(wait) is not { Implicit: false } && AnyGiven(result))
            {
                result.AddError("--timeout, --poll-interval and --progress are for --wait.");
            }
        });
        return wait;
    }

    /// <summary>
    /// How a command that starts a batch (<c>submit</c>, <c>retry</c>) ends once <paramref name="batch"/>
    /// is started: without <paramref name="wait"/> it says <paramref name="started"/> and how to follow
    /// the batch (with <c>--json</c>, prints the batch); with it, it says so and waits for the batch to end.
    /// </summary>
    public async Task<int> FollowAsync(RemoteContext context, Option<bool> wait, Batch batch, string started, CancellationToken cancellationToken)
    {
        if (!context.Parse.GetValue(wait))
        {
            if (context.Json)
            {
                await RemoteOutput.WriteJsonAsync(context.Stdout, json => RemoteOutput.WriteBatch(json, batch));
            }
            else
            {
                await context.Stdout.WriteLineAsync(started);
                await context.Stdout.WriteLineAsync($"  follow it: shepherd wait {batch.Id}");
            }

            return ExitCodes.Success;
        }

        await (context.Json ? context.Stderr : context.Stdout).WriteLineAsync(started);
        return await new RemoteWait(context, Progress(context.Parse)).WaitAsync(batch, Timeout(context.Parse), cancellationToken);
    }

    /// <summary>
    /// Client options for a wait: the client's own retries (a wait that lasts hours should ride out
    /// a short outage of the server) and, with <c>--poll-interval</c>, looks at a steady pace.
    /// </summary>
    public void Tune(ParseResult parse, ShepherdClientOptions options)
    {
        options.MaxRetries = new ShepherdClientOptions { BaseUrl = options.BaseUrl }.MaxRetries;
        if (parse.GetValue(_pollInterval) is { } seconds)
        {
            options.PollInitialDelay = TimeSpan.FromSeconds(seconds);
            options.PollMaxDelay = options.PollInitialDelay;
            options.PollGrowth = 1;
        }
    }
}
