using System.Text.Json;
using Shepherd.Bench;

// Scenarios print one JSON document on stdout; progress notes go to stderr.
var scenario = args.Length > 0 && !args[0].StartsWith("--", StringComparison.Ordinal) ? args[0] : "overhead";
var options = BenchArgs.Parse(args.SkipWhile(a => !a.StartsWith("--", StringComparison.Ordinal)));
var result = scenario switch
{
    "overhead" => await OverheadScenario.RunAsync(options),
    "loop" => await OverheadScenario.LoopProcessAsync(options),
    "store" => await StoreScenario.RunAsync(options),
    "rate-limit" => await RateLimitScenario.RunAsync(options),
    "faults" => await FaultScenario.RunAsync(options),
    "outage" => await OutageScenario.RunAsync(options),
    "status" => await StatusScenario.RunAsync(options),
    "cluster" => await ClusterScenario.RunAsync(options),
    "fuzz" => await FuzzScenario.RunAsync(options),
    "load" => await LoadScenario.RunAsync(options),
    "memory" => await MemoryScenario.RunAsync(options),
    "planner" => await PlannerScenario.RunAsync(options),
    "cache-lookup" => await CacheLookupScenario.RunAsync(options),
    "edit" => await EditScenario.RunAsync(options),
    "gateway" => await GatewayScenario.RunAsync(options),
    "structured" => await StructuredScenario.RunAsync(options),
    _ => throw new ArgumentException($"Unknown scenario '{scenario}'. Scenarios: overhead, store, rate-limit, faults, outage, status, cluster, fuzz, load, memory, planner, edit, cache-lookup, gateway, structured."),
};

Console.WriteLine(JsonSerializer.Serialize(result, new JsonSerializerOptions { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower }));
