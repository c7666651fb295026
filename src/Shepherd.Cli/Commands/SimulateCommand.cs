using System.CommandLine;
using Shepherd.Cli.Running;
using Shepherd.Simulator;

namespace Shepherd.Cli.Commands;

/// <summary><c>shepherd simulate</c>: serves the simulated provider over HTTP on 127.0.0.1 until stopped.</summary>
internal static class SimulateCommand
{
    public static Command Create()
    {
        var port = CliOptions.Int("--port", "Port on 127.0.0.1 (0 picks a free one and prints it)", 0, 0, 65535);
        var apiKey = new Option<string?>("--api-key") { Description = "Refuse requests that do not carry this key (Bearer or x-api-key)" };
        var refusedStatus = CliOptions.Choice("--refused-key-status", "How a request without --api-key is refused: 401 (an unknown key) or 403 (a key without the right)", 401,
            ("401", 401), ("403", 403));
        var simulator = new SimulatorOptionSet(prefix: "", defaultLatencyMs: 0, defaultJitterMs: 0);
        var command = new Command("simulate", "Serve a simulated OpenAI- and Anthropic-compatible provider on 127.0.0.1, with latency, rate limits and faults")
        {
            port,
            apiKey,
            refusedStatus,
        };

        foreach (var option in simulator.All)
        {
            command.Add(option);
        }

        command.SetAction(async (parse, cancellationToken) =>
        {
            var options = simulator.Read(parse);
            options.ApiKey = parse.GetValue(apiKey);
            options.RefusedKeyStatus = refusedStatus.ValueIn(parse);
            var provider = new SimulatedProvider(options, TimeProvider.System, new Random(simulator.Seed(parse)));
            await using var server = await Listening.StartAsync($"http://127.0.0.1:{parse.GetValue(port)}", "--port", () => SimulatorServer.StartAsync(provider, parse.GetValue(port), cancellationToken));
            var root = server.BaseUrl.ToString().TrimEnd('/');
            await Console.Out.WriteLineAsync($"Simulated provider listening on {root}");
            await Console.Out.WriteLineAsync($"  OpenAI-compatible base url: {root}/v1    Anthropic base url: {root}    counters: {root}/_sim/stats");
            await Console.Out.FlushAsync(cancellationToken);
            try
            {
                await Task.Delay(Timeout.InfiniteTimeSpan, TimeProvider.System, cancellationToken);
            }
            catch (OperationCanceledException)
            {
            }

            return ExitCodes.Success;
        });
        return command;
    }
}
